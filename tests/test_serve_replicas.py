"""Two replicas behind one address, routed by nginx with the configuration docs/serving.md
gives (taken from the document itself, only the ports changed): sessions created through the
proxy land on both replicas, and every later call of a session reaches the replica that holds
it. Needs nginx (Debian's nginx-light; scripts/test.sh installs it as root), else skips."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from launch import free_port
from test_serve_api import LiveServer, new_session, write_toy_catalog

from talkplay.data.dataset import read_dataset
from talkplay.evaluate.baselines import SYSTEMS
from talkplay.serve.app import create_app
from talkplay.serve.settings import ServeSettings

DOC = Path(__file__).resolve().parents[1] / "docs" / "serving.md"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def documented_config() -> str:
    """The ```nginx block of docs/serving.md."""
    blocks = re.findall(r"```nginx\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/serving.md should hold exactly one nginx block"
    return blocks[0]


def wait_for(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    if not Path(NGINX).exists():
        pytest.skip("nginx not found: apt-get install nginx-light (scripts/test.sh does as root)")
    tmp = tmp_path_factory.mktemp("replicas")
    ds = read_dataset(write_toy_catalog(tmp / "data"))
    with LiveServer(create_app(SYSTEMS["bm25"](ds), ds, ServeSettings(k=3, replica="r1"))) as r1, \
            LiveServer(create_app(SYSTEMS["bm25"](ds), ds, ServeSettings(k=3, replica="r2"))) as r2:
        port = free_port()
        site = (documented_config().replace("127.0.0.1:8001", f"127.0.0.1:{r1.port}")
                .replace("127.0.0.1:8002", f"127.0.0.1:{r2.port}")
                .replace("listen 8000;", f"listen 127.0.0.1:{port};"))
        temp = "\n".join(f"{k}_temp_path {tmp / k};" for k in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = tmp / "nginx.conf"
        conf.write_text(f"{'user root;' if os.geteuid() == 0 else ''}\n"
                        f"daemon off; worker_processes 1; pid {tmp / 'nginx.pid'};\n"
                        f"error_log {tmp / 'error.log'} warn;\nevents {{}}\n"
                        f"http {{\naccess_log off;\n{temp}\n{site}\n}}\n")
        proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(conf)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            try:
                wait_for(port)
            except RuntimeError:
                proc.kill()
                raise RuntimeError(f"nginx did not start: {proc.communicate()[0].decode()}") from None
            yield f"http://127.0.0.1:{port}", r1, r2
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def test_sessions_through_the_documented_proxy_stay_on_their_replica(proxied):
    url, r1, r2 = proxied
    with httpx.Client(timeout=30) as c:
        assert c.get(f"{url}/api/health").json()["status"] == "ok"
        sessions = [new_session(c, url) for _ in range(6)]  # round robin over both replicas
        assert {sid.split(".")[0] for sid, _ in sessions} == {"r1", "r2"}
        for turn in ("some grunge", "more like that"):
            for sid, h in sessions:
                r = c.post(f"{url}/api/sessions/{sid}/messages", headers=h, json={"text": turn})
                assert r.status_code == 200, (sid, r.text)
                assert len(r.json()["tracks"]) == 3
        # the routing is what makes this work: the other replica does not know the session
        sid, h = next((s, h) for s, h in sessions if s.startswith("r1."))
        r = c.post(f"{r2.url}/api/sessions/{sid}/messages", headers=h, json={"text": "jazz"})
        assert r.status_code == 404
        assert c.post(f"{r1.url}/api/sessions/{sid}/messages", headers=h,
                      json={"text": "jazz"}).status_code == 200
