"""The seed README's four Python code blocks, extracted from the original lrts's README and run
unmodified (only the port numbers are changed, to free ones) against daemons started with the
seed's own command lines."""

import os
import re
import subprocess
import sys

import pytest

from conftest import LRTS_BIN, ROOT, child_env, free_port, wait_until

SEED_DIRS = [os.environ.get("LRTS_SEED_DIR", ""), os.path.join(ROOT, "..", "shared", "seed")]
COPY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "seed_README.md")


def seed_readme() -> str:
    """The seed's README: from ../shared/seed when this checkout has it, else the copy kept
    in tests/python/data (the same text)."""
    for d in SEED_DIRS:
        if d and os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                path = os.path.join(d, name)
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if "```python" in text and "ClientApplication" in text:
                    return text
    with open(COPY, encoding="utf-8") as f:
        return f.read()


def python_blocks(text: str):
    return re.findall(r"```python\n(.*?)```", text, re.S)


def patch_ports(code: str, scheduler: int, progress: int) -> str:
    return (code.replace("scheduler_port='5555'", f"scheduler_port='{scheduler}'")
                .replace("progress_server_port='5454'", f"progress_server_port='{progress}'"))


@pytest.fixture
def seed_cluster(tmp_path):
    port, progress_port = free_port(), free_port()
    procs = []
    env = child_env()
    lines = [
        ["scheduler", "-address", "127.0.0.1", "-port", str(port), "-timeout", "1"],
        ["progress-server", "-address", "127.0.0.1", "-port", str(progress_port), "-timeout",
         "1"],
        ["worker", "-scheduler-address", "127.0.0.1", "-scheduler-port", str(port),
         "-progress-address", "127.0.0.1", "-progress-port", str(progress_port), "-max-jobs",
         "-1", "-timeout", "1"],
    ]
    for i, args in enumerate(lines):
        log = open(tmp_path / f"daemon{i}.log", "wb")
        procs.append(subprocess.Popen([LRTS_BIN] + args, stdout=log, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True))
    import lrts
    admin = lrts.Admin(scheduler_port=port, timeout=1)

    def one_worker():
        try:
            return admin.status()["workers"] >= 1
        except Exception:
            return False
    wait_until(one_worker, 30, "the seed's worker to register")
    yield port, progress_port, tmp_path
    for p in procs:
        p.kill()
        p.wait()


def test_the_readme_has_the_four_blocks():
    blocks = python_blocks(seed_readme())
    assert len(blocks) == 4
    assert "class MultService(Service)" in blocks[0]
    assert "application.wait_for(service_id=service_id)" in blocks[1]
    assert "wait_for_multi(" in blocks[2]
    assert "as_completed(service_ids=service_ids)" in blocks[3]


def test_the_service_block_is_the_shipped_mult_service(tmp_path):
    """Block 1 defines MultService as lrts.examples.services.mult_service has it."""
    from lrts.examples.services import mult_service
    block = python_blocks(seed_readme())[0]
    with open(mult_service.__file__, encoding="utf-8") as f:
        assert f.read().strip() == block.strip()
    ns = {"__name__": "seed_block"}
    exec(compile(block, "seed-block-1", "exec"), ns)
    s = ns["MultService"](a=6, b=9)
    assert s.service_name() == "Multiplication Service Example"
    assert ns["MultService"].run(s) == 54


ID = r"[0-9a-f]{16}-[0-9a-f]+"


def run_block(index, seed_cluster):
    port, progress_port, tmp = seed_cluster
    code = patch_ports(python_blocks(seed_readme())[index], port, progress_port)
    script = tmp / f"block{index}.py"
    script.write_text(code)
    r = subprocess.run(["/usr/bin/python3", str(script)], capture_output=True, text=True,
                       timeout=120, env=child_env(), cwd=str(tmp))
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_wait_for_block(seed_cluster):
    lines = run_block(1, seed_cluster)
    assert len(lines) == 1
    assert re.fullmatch(rf"Service with ID: {ID} finished with result: 54", lines[0])


def test_wait_for_multi_block(seed_cluster):
    lines = run_block(2, seed_cluster)
    assert len(lines) == 2
    assert re.fullmatch(rf"Service with ID: {ID} finished with result: 54", lines[0])
    assert re.fullmatch(rf"Service with ID: {ID} finished with result: 0", lines[1])


def test_as_completed_block(seed_cluster):
    lines = run_block(3, seed_cluster)
    assert len(lines) == 3
    results = []
    for line in lines:
        m = re.fullmatch(rf"Service with ID: ({ID}) finished with result: (\d+)", line)
        assert m, line
        results.append(int(m.group(2)))
    assert sorted(results) == [0, 8, 54]
    assert len({re.search(ID, line).group(0) for line in lines}) == 3


def test_a_service_defined_in_main_runs_by_value(seed_cluster):
    """Block 1 pasted into the application's own script (so MultService lives in __main__)."""
    port, progress_port, tmp = seed_cluster
    blocks = python_blocks(seed_readme())
    app = patch_ports(blocks[1], port, progress_port).replace(
        "from lrts.examples.services.mult_service import MultService\n", "")
    service = blocks[0].replace("from __future__ import annotations\n", "")
    code = "from __future__ import annotations\n" + service + "\n" + app
    script = tmp / "main_service.py"
    script.write_text(code)
    r = subprocess.run(["/usr/bin/python3", str(script)], capture_output=True, text=True,
                       timeout=120, env=child_env(), cwd=str(tmp))
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rf"Service with ID: {ID} finished with result: 54\n", r.stdout)
