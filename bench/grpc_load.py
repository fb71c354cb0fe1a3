"""A closed-loop gRPC load driver for the Open Inference Protocol's ModelInfer.

    .venv/bin/python bench/grpc_load.py --target 127.0.0.1:8001 --key KEY \\
        [--concurrency 16] [--seconds 10] REQUEST_FILE...

Each REQUEST_FILE holds one serialized `inference.ModelInferRequest` (as tritonclient.grpc
builds it); `--concurrency` clients on one channel send them in turn through the stub in
tritonclient.grpc.service_pb2_grpc (grpc.aio), each waiting for its answer before the next
call, with the key in the `x-api-key` metadata. After `--seconds`, no call starts; those
in flight finish.

Prints one line, `BENCH_JSON {...}`, with the fields bench/predict.lua prints (requests
answered within the time, seconds, failures, p50/p95/p99 ms) and: `completed`, every call
answered, the ones finished after the time too (the server did their work);
`cpu_seconds`, this process's own CPU time (user + system, all threads) from the first call
to the last answer, without its start-up; `first_error`, the first failure's status, if any.
"""

import argparse
import asyncio
import itertools
import json
import time
from pathlib import Path

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

MAX_MESSAGE = 64 * 1024 * 1024


async def drive(target: str, key: str, concurrency: int, seconds: float, files: list[str]) -> dict:
    requests = [service_pb2.ModelInferRequest.FromString(Path(f).read_bytes()) for f in files]
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE),
        ("grpc.max_receive_message_length", MAX_MESSAGE),
    ]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        await channel.channel_ready()
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        metadata = (("x-api-key", key),)
        counter = itertools.count()
        latencies: list[float] = []
        late = failures = 0
        first_error = ""
        cpu_started, started = time.process_time(), time.perf_counter()
        deadline = started + seconds

        async def client() -> None:
            nonlocal late, failures, first_error
            while time.perf_counter() < deadline:
                request = requests[next(counter) % len(requests)]
                sent = time.perf_counter()
                try:
                    await stub.ModelInfer(request, metadata=metadata, timeout=30)
                except grpc.aio.AioRpcError as error:
                    failures += 1
                    first_error = first_error or f"{error.code().name}: {error.details()}"
                    continue
                answered = time.perf_counter()
                if answered <= deadline:
                    latencies.append((answered - sent) * 1000)
                else:
                    late += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        cpu = time.process_time() - cpu_started
    latencies.sort()

    def percentile(p: float) -> float:
        return latencies[min(int(len(latencies) * p), len(latencies) - 1)] if latencies else 0.0

    return {
        "requests": len(latencies),
        "completed": len(latencies) + late,
        "seconds": seconds,
        "non2xx": failures,
        "errors": 0,
        "p50": percentile(0.50),
        "p95": percentile(0.95),
        "p99": percentile(0.99),
        "cpu_seconds": cpu,
        "first_error": first_error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", required=True, help="host:port of the gRPC server")
    parser.add_argument("--key", required=True, help="an API key with the predict scope")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("requests", nargs="+", help="files of serialized ModelInferRequest messages")
    args = parser.parse_args()
    result = asyncio.run(drive(args.target, args.key, args.concurrency, args.seconds, args.requests))
    print("BENCH_JSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
