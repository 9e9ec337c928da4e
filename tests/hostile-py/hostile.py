"""A deliberately hostile train in Python, for the sandbox tests: the interpreter's version of
tests/hostile (the static binary), trying the escapes that apply to an interpreter and
reporting what it saw as key=value lines with the same keys and the same words ("ok",
"failed: …"), on stdout as it goes and in /output/report.txt at the end. It judges nothing:
the tests compare its report with the static train's.

Modes: net-loopback, net-tcp (host, port), dns (name), write-data (dataset, file), write-root,
forkbomb, memhog, environ, symlink-passwd, ok.
"""

import json
import os
import socket
import sys
import threading

REPORT_PATH = "/output/report.txt"
lines = []


def record(key, value):
    line = f"{key}={value}"
    print(line, flush=True)
    lines.append(line)


def describe(action):
    try:
        action()
        return "ok"
    except OSError as error:
        return f"failed: {error}"


def connect(host, port):
    record("tcp_target", f"{host}:{port}")
    def attempt():
        with socket.create_connection((host, port), timeout=3) as stream:
            stream.sendall(b"hello from inside the sandbox\n")
    result = describe(attempt)
    record("tcp_connect", "connected" if result == "ok" else result)


def mode_dns(params):
    name = params.get("name", "example.com")
    record("dns_name", name)
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(name, 80)})
        record("dns", "resolved " + " ".join(addresses))
    except OSError as error:
        record("dns", f"failed: {error}")


def write_file(path, text, mode="w"):
    with open(path, mode) as handle:
        handle.write(text)


def mode_write_data(params):
    dataset, name = params["dataset"], params["file"]
    record("write_data_create", describe(lambda: write_file(f"/data/{dataset}/x", "pwned")))
    record("write_data_append", describe(lambda: write_file(f"/data/{dataset}/{name}", "pwned\n", "a")))
    record("write_data_remove", describe(lambda: os.remove(f"/data/{dataset}/{name}")))


def mode_write_root(_params):
    record("write_root", describe(lambda: write_file("/pwned", "pwned")))
    record("write_input", describe(lambda: write_file("/input/params.json", "{}")))
    record("tmp_write", describe(lambda: write_file("/tmp/probe", "scratch")))
    # /tmp is scratch space, but nothing written there may be executed (noexec).
    def copy_then_exec():
        write_file("/tmp/hostile-copy", "#!/usr/bin/python3\n")
        os.chmod("/tmp/hostile-copy", 0o755)
        pid = os.fork()
        if pid == 0:
            try:
                os.execv("/tmp/hostile-copy", ["/tmp/hostile-copy"])
            finally:
                os._exit(127)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 127:
            raise PermissionError("exec of /tmp/hostile-copy refused")
    record("tmp_exec", describe(copy_then_exec))


def mode_forkbomb(params):
    # Threads count against the pids limit like processes do.
    max_tasks = int(params.get("max", 10000))
    n_threads_spawned, thread_error = 0, "none"
    stop = threading.Event()
    while n_threads_spawned < max_tasks:
        try:
            thread = threading.Thread(target=stop.wait, daemon=True)
            thread.start()
            n_threads_spawned += 1
        except RuntimeError as error:
            thread_error = str(error)
            break
    record("threads_spawned", str(n_threads_spawned))
    record("thread_error", thread_error)
    # Once threads are exhausted, a whole new process must be refused too.
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        record("process_spawn", "ok")
    except OSError as error:
        record("process_spawn", f"failed: {error}")


def mode_memhog(params):
    chunks = []
    for mib_idx in range(1, int(params.get("max_mib", 4096)) + 1):
        # bytearray(n) is zero-filled by the allocator; writing every page commits it.
        chunk = bytearray(1024 * 1024)
        chunk[::4096] = bytes([mib_idx % 251 + 1]) * len(range(0, len(chunk), 4096))
        chunks.append(chunk)
        if mib_idx % 16 == 0:
            print(f"allocated_mib={mib_idx}", flush=True)
    record("memhog", f"not killed after allocating {len(chunks)} MiB")


def mode_environ(_params):
    try:
        with open("/proc/1/environ", "rb") as handle:
            entries = sorted(e.decode(errors="replace") for e in handle.read().split(b"\0") if e)
        record("environ_pid1", "read")
        record("environ_names", ",".join(e.split("=", 1)[0] for e in entries))
        record("environ", " ".join(entries))
    except OSError as error:
        record("environ_pid1", f"failed: {error}")


def mode_symlink_passwd(_params):
    record("symlink_passwd", describe(lambda: os.symlink("/etc/passwd", "/output/leak")))
    record("symlink_passwd_relative", describe(lambda: os.symlink("../../../../etc/passwd", "/output/leak-relative")))
    record("symlink_etc_directory", describe(lambda: os.symlink("/etc", "/output/etc")))


MODES = {
    "ok": lambda params: record("ok", "ok"),
    "net-loopback": lambda params: connect("127.0.0.1", int(params.get("port", 7000))),
    "net-tcp": lambda params: connect(params["host"], int(params.get("port", 7000))),
    "dns": mode_dns,
    "write-data": mode_write_data,
    "write-root": mode_write_root,
    "forkbomb": mode_forkbomb,
    "memhog": mode_memhog,
    "environ": mode_environ,
    "symlink-passwd": mode_symlink_passwd,
}


def main():
    with open("/input/params.json") as handle:
        params = {key: str(value) for key, value in json.load(handle).items()}
    mode = params.get("mode", "")
    record("mode", mode)
    if mode not in MODES:
        record("error", f"unknown mode {mode!r}")
        return 2
    MODES[mode](params)
    try:
        write_file(REPORT_PATH, "\n".join(lines) + "\n")
    except OSError as error:
        print(f"report_write=failed: {error}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
