"""The gRPC server around the service: the standard health service (what a Kubernetes `grpc`
probe asks), server reflection (what grpcurl lists), its metrics port, and a graceful stop."""

import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.grpc import service_pb2 as pb

from apps.oip import services
from apps.oip.grpc import server
from tests.oip.test_grpc_tritonclient import *  # noqa: F403  (the fixtures: grpc_server, stub, metadata)

pytestmark = pytest.mark.django_db(transaction=True)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def channel(grpc_server):
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        yield channel


def health_of(channel: grpc.Channel, service: str = "") -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service)).status


def eventually(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_health_follows_the_readiness_checks(channel, monkeypatch, demo_version):
    for service in ("", server.SERVICE_NAME):
        eventually(lambda service=service: health_of(channel, service) == SERVING)
    monkeypatch.setattr(services, "server_ready", lambda: False)  # the database went away, say
    eventually(lambda: health_of(channel) == NOT_SERVING)
    with pytest.raises(grpc.RpcError) as raised:
        health_of(channel, "no.such.Service")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_services(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {service.name for service in answer.list_services_response.service}
    assert names == {server.SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    described = ProtoReflectionDescriptorDatabase(channel).FindFileContainingSymbol(server.SERVICE_NAME)
    assert "ModelInfer" in [method.name for method in described.service[0].method]


def test_the_metrics_port_counts_calls_by_method_and_code(triton, metadata, demo_version):
    exporter = server.start_metrics_exporter(0, "127.0.0.1")
    try:
        triton.is_server_live()
        with pytest.raises(Exception, match="no-such-model"):
            triton.get_model_metadata("no-such-model", headers=metadata)
        array = np.zeros((1, 3, 224, 224), np.float32)
        tensor = grpcclient.InferInput("input", list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        triton.infer("effnet", [tensor], headers=metadata)
        url = f"http://127.0.0.1:{exporter.server_port}/metrics"
        text = urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        exporter.shutdown()
        exporter.server_close()
    assert 'mlplatform_grpc_calls_total{code="OK",method="ServerLive"}' in text
    assert 'mlplatform_grpc_calls_total{code="NOT_FOUND",method="ModelMetadata"}' in text
    assert 'mlplatform_grpc_call_seconds_count{method="ModelInfer"}' in text
    assert 'source="v2-grpc",status="succeeded"' in text  # mlplatform_predictions_total


def test_a_stop_lets_the_call_in_flight_finish_and_refuses_new_ones(monkeypatch, db):
    running = server.start(address="127.0.0.1", port=0, max_workers=2, max_message_bytes=1 << 20)
    metadata = services.server_metadata()
    started = threading.Event()

    def slow_metadata() -> dict:
        started.set()
        time.sleep(0.5)
        return metadata

    monkeypatch.setattr(services, "server_metadata", slow_metadata)
    answers = []
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = pb_stub(channel)
        caller = threading.Thread(
            target=lambda: answers.append(stub.ServerMetadata(pb.ServerMetadataRequest()))
        )
        caller.start()
        started.wait(5)
        running.stop(grace=5)
        caller.join(5)
        assert answers and answers[0].name == "mlplatform"
        with pytest.raises(grpc.RpcError) as raised:
            stub.ServerLive(pb.ServerLiveRequest(), timeout=2)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_calls_the_service_does_not_offer_are_unimplemented(stub, metadata):
    with pytest.raises(grpc.RpcError) as raised:
        stub.ModelStatistics(pb.ModelStatisticsRequest(name="effnet"), metadata=list(metadata.items()))
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def pb_stub(channel: grpc.Channel):
    from tritonclient.grpc import service_pb2_grpc

    return service_pb2_grpc.GRPCInferenceServiceStub(channel)


def test_a_pool_thread_keeps_its_cache_client_from_call_to_call(monkeypatch, db):
    """grpcio runs each call in a fresh context; Django's caches live in context-local
    storage. Without one context per pool thread, every call built a new cache client (and,
    on Redis, a new connection)."""
    from django.core.cache import cache

    running = server.start(address="127.0.0.1", port=0, max_workers=1, max_message_bytes=1 << 20)
    metadata = services.server_metadata()
    seen = []

    def metadata_noting_the_cache() -> dict:
        seen.append(id(cache._connections[cache._alias]))
        return metadata

    monkeypatch.setattr(services, "server_metadata", metadata_noting_the_cache)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_stub(channel)
            for _ in range(3):
                stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=5)
    finally:
        running.stop(grace=1)
    assert len(seen) == 3 and len(set(seen)) == 1
