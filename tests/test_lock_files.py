"""The hashed lock files (`make lock`, ADR 0029) agree with the requirements files they are made
from: every top-level pin is locked at that version, every locked package has hashes, torch is
its CPU build, and `scripts/lock.sh --check` notices a requirements file changed without them."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {  # lock: the requirements files it is made from
    "requirements.lock": ["requirements.txt"],
    "requirements-converters.lock": ["requirements.txt", "requirements-extras.txt"],
    "requirements-dev.lock": ["requirements-dev.txt"],
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name: version of every `name==version` line, following `-r` includes."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            found |= pins(path.parent / line.split()[1])
        elif match := PIN.match(line):
            found[canonical(match.group(1))] = match.group(2)
    return found


def locked(path: Path) -> dict[str, list[str]]:
    """name==version: its hashes, for every package in a lock file."""
    entries: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        if match := PIN.match(line):
            current = f"{canonical(match.group(1))}=={match.group(2)}"
            entries[current] = []
        elif current and (hashed := re.search(r"--hash=sha256:([0-9a-f]{64})", line)):
            entries[current].append(hashed.group(1))
    return entries


@pytest.mark.parametrize("lock", LOCKS)
def test_every_top_level_pin_is_locked_at_its_version_with_hashes(lock):
    entries = locked(ROOT / lock)
    versions = {entry.split("==")[0]: entry.split("==")[1] for entry in entries}
    for source in LOCKS[lock]:
        for name, version in pins(ROOT / source).items():
            # torch is locked as its CPU build: 2.13.0 in the input, 2.13.0+cpu in the lock.
            assert versions.get(name, "").split("+")[0] == version, f"{name}=={version} in {lock}"
    assert all(entries.values()), [entry for entry, hashes in entries.items() if not hashes]


def test_torch_is_locked_as_the_cpu_build_of_the_wheel_on_disk():
    for lock in ("requirements-converters.lock", "requirements-dev.lock"):
        [torch] = [entry for entry in locked(ROOT / lock) if entry.startswith("torch==")]
        assert torch.endswith("+cpu")
        assert not any(entry.startswith("nvidia-") for entry in locked(ROOT / lock))
    assert not any(entry.startswith("torch==") for entry in locked(ROOT / "requirements.lock"))


def test_a_package_has_one_version_in_every_lock():
    versions: dict[str, set[str]] = {}
    for lock in LOCKS:
        for entry in locked(ROOT / lock):
            name, version = entry.split("==")
            versions.setdefault(name, set()).add(version)
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}


def test_the_check_notices_a_requirements_file_changed_without_make_lock(tmp_path):
    for name in (
        "scripts/lock.sh",
        *LOCKS,
        "requirements.txt",
        "requirements-extras.txt",
        "requirements-dev.txt",
    ):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    check = ["bash", str(tmp_path / "scripts/lock.sh"), "--check"]

    assert subprocess.run(check, capture_output=True).returncode == 0
    with (tmp_path / "requirements.txt").open("a") as requirements:
        requirements.write("left-pad==1.0.0\n")
    refused = subprocess.run(check, capture_output=True, text=True)

    assert refused.returncode == 1
    assert "make lock" in refused.stderr
