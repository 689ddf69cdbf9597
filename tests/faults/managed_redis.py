"""Redis as operators run it, as real processes: a server that speaks only TLS (a throwaway CA and certificate
made with the ``openssl`` command), and a primary, a replica and a Sentinel that can fail over."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis
from faultkit import free_port, redis_answers, wait_for


def redis_server() -> str:
    """Debian's redis-server (built with TLS), not the embedded one (built without)."""
    return "redis-server"


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA and a certificate for ``localhost`` signed by it: ``ca``, ``cert``, ``key``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {name: directory / f"{name}.pem" for name in ("ca", "ca_key", "cert", "key", "csr")}

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
            "-keyout", str(files["ca_key"]), "-out", str(files["ca"]))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(files["key"]),
            "-out", str(files["csr"]))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(files["csr"]), "-CA", str(files["ca"]), "-CAkey", str(files["ca_key"]),
            "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-out", str(files["cert"]))
    return files


class RedisProcess:
    """One redis-server (or sentinel) of a test, on a free port, killed at :meth:`stop`."""

    def __init__(self, directory: Path, *args: str, sentinel: bool = False, config: str = "") -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        path = self.dir / "redis.conf"  # a file: Sentinel rewrites its own
        path.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nlogfile {self.dir / 'redis.log'}\n"
                        + ("" if sentinel else "save \"\"\nappendonly no\n") + config)
        argv = [redis_server(), str(path), *args] + (["--sentinel"] if sentinel else [])
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, decode_responses=True)

    def wait_ready(self) -> None:
        wait_for(lambda: redis_answers(self.port), f"redis on port {self.port}", timeout=15, every=0.05)

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


class TlsRedis(RedisProcess):
    """A redis-server that listens only on a TLS port (its plain port is off)."""

    def __init__(self, directory: Path, certs: dict[str, Path]) -> None:
        self.tls_port = free_port()
        super().__init__(directory, "--port", "0", "--tls-port", str(self.tls_port),
                         "--tls-cert-file", str(certs["cert"]), "--tls-key-file", str(certs["key"]),
                         "--tls-ca-cert-file", str(certs["ca"]), "--tls-auth-clients", "no")
        wait_for(lambda: "Ready to accept connections" in self.log(), "the TLS redis-server", timeout=15,
                 every=0.05)

    @property
    def url(self) -> str:
        return f"rediss://localhost:{self.tls_port}/0"


class SentinelGroup:
    """A primary, a replica and one Sentinel watching them as ``mymaster``."""

    SERVICE = "mymaster"

    def __init__(self, directory: Path) -> None:
        self.primary = RedisProcess(directory / "primary")
        self.primary.wait_ready()
        self.replica = RedisProcess(directory / "replica", "--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.wait_ready()
        self.sentinel = RedisProcess(directory / "sentinel", sentinel=True, config=(
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 10000\n"))
        self.sentinel.wait_ready()
        wait_for(lambda: self.replicas_known() >= 1, "the sentinel to discover the replica", timeout=30)

    @property
    def sentinels(self) -> str:
        return f"127.0.0.1:{self.sentinel.port}"

    def primary_port(self) -> int:
        client = self.sentinel.client()
        try:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
            return int(port)
        finally:
            client.close()

    def replicas_known(self) -> int:
        client = self.sentinel.client()
        try:
            return len(client.execute_command("SENTINEL", "REPLICAS", self.SERVICE))
        except redis.RedisError:
            return 0
        finally:
            client.close()

    def fail_over(self) -> None:
        """``SENTINEL FAILOVER``: the replica becomes the primary, the old primary its replica."""
        client = self.sentinel.client()
        try:
            client.execute_command("SENTINEL", "FAILOVER", self.SERVICE)
        finally:
            client.close()

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.primary):
            server.stop()
