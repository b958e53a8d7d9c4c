#!/usr/bin/env python3
"""Smoke test of a cross-built gateway under qemu-user (scripts/arm-smoke.sh).

Starts `shanhai serve` through RUNNER (e.g. `qemu-aarch64 -L
/usr/aarch64-linux-gnu`) in a temporary working folder, serving the Go
example modules in MODULES, and exercises every trigger once with real
clients over 127.0.0.1: HTTP (/hello, the `add` export, json2k), a
WebSocket round trip (ws-echo), MQTT through the embedded broker
(mqtt-transform, with mosquitto_pub and mosquitto_sub), KV (rules),
SQLite (etl), a timer (sensor-poll) and a Modbus frame on a TCP trigger
(modbus).

With --host-binary (this machine's own shanhai), the box compiles only
the modules in ON_BOX itself, as it would on first boot: the others are
compiled here for the box (`shanhai compile --target`, seconds each,
where emulation takes over half a minute) and deployed with `deploy
--precompiled`, and must load without compiling. Then tampered code and
code for another memory layout are refused and the box compiles the
module itself. Without it, the box compiles every module.

Every check asserts its result; the first mismatch stops the run with a
message and exit status 1. Waits poll a condition up to a deadline:
under qemu the compile of a Go module takes over half a minute.

Python 3 standard library only.
"""

import argparse
import base64
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

MODULES = ["hello", "add", "json2k", "ws-echo", "mqtt-transform", "rules", "etl", "sensor-poll", "modbus"]
# Compiled by the box under emulation, which proves Go code compiles there;
# with a host binary, the rest arrive compiled (see the docstring).
ON_BOX = ["hello"]


class SmokeFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise SmokeFailure(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, deadline_s, probe, every_s=1.0):
    """Calls probe() until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except (OSError, ValueError, SmokeFailure) as err:
            last = err
        time.sleep(every_s)
    raise SmokeFailure(f"timed out after {deadline_s:.0f} s waiting for {what} (last error: {last})")


def http(base, method, path, body=None, timeout=120):
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(base + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def expect(base, method, path, status, body=None):
    got, data = http(base, method, path, body)
    check(got == status, f"{method} {path}: status {got}, expected {status}: {data[:500]!r}")
    return data


def websocket_echo(port, path, text):
    """Opens a WebSocket, sends one masked text frame, returns the reply's
    opcode and payload."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            check(chunk, f"WebSocket {path}: connection closed during the handshake: {head!r}")
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        check(head.startswith(b"HTTP/1.1 101"), f"WebSocket {path}: no 101: {head[:200]!r}")
        payload = text.encode()
        mask = os.urandom(4)
        check(len(payload) < 126, "the smoke sends short frames only")
        frame = bytes([0x81, 0x80 | len(payload)]) + mask
        frame += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        sock.sendall(frame)
        buf = rest
        while len(buf) < 2:
            buf += sock.recv(4096)
        opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
        check(length < 126, f"WebSocket {path}: unexpected long reply header {buf[:4]!r}")
        while len(buf) < 2 + length:
            chunk = sock.recv(4096)
            check(chunk, "WebSocket closed before the reply's payload")
            buf += chunk
        return opcode, buf[2 : 2 + length]


def modbus_exchange(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(request)
        reply = b""
        while len(reply) < 6 or len(reply) < 6 + struct.unpack(">H", reply[4:6])[0]:
            chunk = sock.recv(4096)
            check(chunk, f"Modbus connection closed after {reply!r}")
            reply += chunk
        return reply


class Subscriber:
    """mosquitto_sub on the embedded broker, printing `topic payload-hex`."""

    def __init__(self, port, topics, log_path):
        args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-F", "%t %x"]
        for topic in topics:
            args += ["-t", topic]
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)

    def messages(self):
        with open(self.log_path) as f:
            for line in f:
                topic, _, payload = line.rstrip("\n").partition(" ")
                try:
                    yield topic, bytes.fromhex(payload)
                except ValueError:
                    yield topic, payload.encode()

    def find(self, topic):
        for got, payload in self.messages():
            if got == topic:
                return payload
        return None

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()


ADMIN_TOKEN = "arm-smoke-admin-token-0123456789abcdef"


def write_config(work, ports, trusted_key):
    config = f"""
[server]
listen = "127.0.0.1:{ports['http']}"
modules_dir = "modules"
watch = false
# The smoke asks only after /readyz: a short wait then never blocks it.
loading_wait_ms = 120000

[admin]
listen = "127.0.0.1:{ports['admin']}"
token = "{ADMIN_TOKEN}"

# The build machine's key (scripts/arm_smoke.py made it): compiled code
# signed by it loads without compiling. Modules need no signature.
[signing]
trusted_keys = ["{trusted_key}"]

[state]
data_dir = "data"

[mqtt]
listen = "127.0.0.1:{ports['mqtt']}"

[mqtt.triggers.raw]
filter = "sensors/+/raw"
module = "mqtt-transform"
output_topic = "sensors/{{1}}/json"

[timers.poll]
module = "sensor-poll"
every_ms = 3000
payload = "7"

[modules.sensor-poll.grants]
mqtt_publish = ["sensors/+/reading"]

[tcp.plc]
listen = "127.0.0.1:{ports['tcp']}"
module = "modbus"
framing = "modbus"

[modules.modbus]
max_instances = 1
[modules.modbus.vars]
holding = "0=100,1=200,7=42"

[modules.rules.grants]
kv = true

[modules.etl.grants]
sqlite = true

[modules.hello.vars]
greeting = "Nǐ hǎo"

# Under emulation an instance takes far longer to create and an event to run.
[runtime]
init_deadline_ms = 120000

[defaults]
deadline_ms = 60000
"""
    path = os.path.join(work, "shanhai.toml")
    with open(path, "w") as f:
        f.write(config)
    return path


def with_custom_section(wasm, name):
    """The same module with a custom section appended: other bytes (so
    another SHA-256 and no compile-cache entry yet), same behaviour."""
    name = name.encode()
    payload = bytes([len(name)]) + name
    check(len(payload) < 128, "custom section name too long for a one-byte size")
    return wasm + bytes([0, len(payload)]) + payload


def log_lines(log_path, module, text):
    """Log lines containing `text` about module `module` (ANSI colours off)."""
    pattern = re.compile(r'module="?' + re.escape(module) + r'"?(\s|$)')
    with open(log_path) as f:
        lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in f]
    return [line for line in lines if text in line and pattern.search(line)]


def compile_for_box(host, target, work, folder, files, *extra):
    """Compiles FILES here for the box's TARGET into FOLDER, signed with
    the build key the box trusts (`shanhai compile --target`)."""
    command = [host, "compile", "--target", target, "--key", "build.key", "--cache-dir", folder, *extra]
    done = subprocess.run(command + files, cwd=work, capture_output=True, text=True, timeout=900)
    check(done.returncode == 0, f"shanhai compile --target {target} failed: {done.stderr}")


def deploy(host, work, admin, path, folder):
    """`shanhai deploy PATH --precompiled FOLDER`; returns what it said."""
    command = [host, "deploy", path, "--to", admin, "--token", ADMIN_TOKEN, "--precompiled", folder]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=900)
    name = os.path.basename(path)
    check(done.returncode == 0, f"shanhai deploy {name} failed: {done.stdout}{done.stderr}")
    return done.stdout + done.stderr


def check_loaded_without_compiling(log_path, names):
    for name in names:
        check(log_lines(log_path, name, "module loaded") and log_lines(log_path, name, "from_cache=true"),
              f"{name}: no `module loaded ... from_cache=true` line")
        check(not log_lines(log_path, name, "compiling module"), f"{name} was compiled on the box")


def refusal_checks(host, target, modules, work, admin, base, log_path):
    """Deploys code compiled here that the box must refuse, then compile."""
    folder = os.path.join(work, "refused")
    with open(os.path.join(modules, "hello-rs.wasm"), "rb") as f:
        rust = f.read()
    files = {}
    for name in ["rs-tampered", "rs-layout"]:
        files[name] = os.path.join(work, f"{name}.wasm")
        with open(files[name], "wb") as f:
            f.write(with_custom_section(rust, name))
    compile_for_box(host, target, work, folder, [files["rs-tampered"]])
    # Compiled for a 47-bit address space: another memory layout than the
    # box plans for itself (bounds-checked under 512 GiB or 32 bits).
    compile_for_box(host, target, work, folder, [files["rs-layout"]], "--va-bits", "47")
    isa = {"aarch64": "aarch64", "armv7": "pulley32"}[target]
    tampered = os.path.join(folder, f"rs-tampered.{isa}.cwasm")
    with open(tampered, "r+b") as f:
        f.seek(os.path.getsize(tampered) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))

    for name, refusal in [
        ("rs-tampered", "the signature does not match the code"),
        ("rs-layout", "does not fit this gateway's engine"),
    ]:
        said = deploy(host, work, admin, files[name], folder)
        check(refusal in said, f"deploy {name}: expected a refusal saying {refusal!r}: {said}")
        check(log_lines(log_path, name, "compiling module"), f"{name}: the box did not compile it after the refusal")
        body = expect(base, "POST", f"/api/exec/{name}/upper", 200, "arm box").decode()
        check(body == "ARM BOX", f"{name} upper answered {body!r}")
        print(f"ok   precompiled: {name.split('-')[1]} code refused, compiled on the box, serves", flush=True)


def run(args):
    work = tempfile.mkdtemp(prefix="shanhai-arm-smoke-")
    print(f"smoke: working folder {work}", flush=True)
    os.mkdir(os.path.join(work, "modules"))
    sources = {name: os.path.join(args.modules, f"{name}.wasm") for name in MODULES}
    for src in sources.values():
        check(os.path.exists(src), f"module {src} is missing: run scripts/build-examples.sh")
    host = os.path.abspath(args.host_binary) if args.host_binary else None
    precompiled = [name for name in MODULES if name not in ON_BOX] if host else []
    for name in MODULES:
        if name not in precompiled:
            shutil.copyfile(sources[name], os.path.join(work, "modules", f"{name}.wasm"))
    ports = {name: free_port() for name in ("http", "mqtt", "tcp", "admin")}
    admin = f"http://127.0.0.1:{ports['admin']}"
    compiled = os.path.join(work, "compiled")
    if host:
        subprocess.run([host, "keygen", "--out", "build"], cwd=work, check=True, capture_output=True)
        with open(os.path.join(work, "build.pub")) as f:
            trusted_key = f.read().strip()
        started = time.monotonic()
        compile_for_box(host, args.target, work, compiled, [sources[name] for name in precompiled])
        print(f"smoke: {len(precompiled)} modules compiled here for {args.target} in {time.monotonic() - started:.1f} s", flush=True)
    else:
        # A fresh key nobody holds the secret of: no compiled code loads.
        trusted_key = "ed25519:" + "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
    config = write_config(work, ports, trusted_key)
    base = f"http://127.0.0.1:{ports['http']}"
    command = shlex.split(args.runner) + [os.path.abspath(args.binary), "serve", "--config", config]
    if args.ulimit_v:
        # `ulimit -v` in KiB, as the shell takes it, before qemu starts.
        command = ["bash", "-c", f"ulimit -v {args.ulimit_v} && exec " + shlex.join(command)]
    print("smoke: " + shlex.join(command), flush=True)
    log_path = os.path.join(work, "gateway.log")
    log = open(log_path, "w")
    # `memory layout` is an info line: keep the default log level.
    env = {k: v for k, v in os.environ.items() if k != "SHANHAI_LOG"}
    gateway = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    subscriber = None
    started = time.monotonic()

    def alive():
        if gateway.poll() is not None:
            raise SmokeFailure(f"the gateway exited with status {gateway.returncode}")
        return True

    try:
        wait_for("the HTTP listener (/healthz 200)", 120, lambda: alive() and http(base, "GET", "/healthz", timeout=10)[0] == 200)
        print(f"smoke: listening after {time.monotonic() - started:.1f} s", flush=True)
        for name in precompiled:
            said = deploy(host, work, admin, sources[name], compiled)
            check("sent compiled code" in said, f"deploy {name}: the compiled code was not taken: {said}")
        if precompiled:
            print(f"smoke: {len(precompiled)} modules deployed with their code after {time.monotonic() - started:.1f} s", flush=True)
        subscriber = Subscriber(ports["mqtt"], ["sensors/+/json", "sensors/+/reading"], os.path.join(work, "mqtt.log"))

        def ready():
            alive()
            status, body = http(base, "GET", "/readyz", timeout=30)
            return status == 200 and json.loads(body)

        readiness = wait_for("every module loaded (/readyz 200)", args.load_deadline, ready, every_s=5)
        check(not readiness["failed"], f"modules failed to load: {readiness}")
        check(sorted(readiness["modules"]) == sorted(MODULES), f"modules serving: {readiness['modules']}")
        print(f"smoke: {len(MODULES)} modules loaded after {time.monotonic() - started:.1f} s", flush=True)
        if precompiled:
            check_loaded_without_compiling(log_path, precompiled)
            print(f"ok   precompiled: {len(precompiled)} modules' {args.target} code compiled on x86-64 loaded without compiling", flush=True)
        for name in MODULES:
            if name not in precompiled:
                check(log_lines(log_path, name, "compiling module"), f"{name}: the box did not compile it")
        with open(log_path) as f:
            text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
        # qemu-user without binfmt_misc cannot start the compile worker
        # (another ARM binary): the gateway says so once and compiles itself.
        fallbacks = text.count("no compile worker")
        check(fallbacks <= 1, f"the compile-worker fallback was logged {fallbacks} times")
        check(fallbacks == 1 or "in_worker=true" in text, "modules compiled neither in a worker nor after the fallback")
        where = "in the gateway's process (no worker under qemu-user)" if fallbacks else "in compile workers"
        print(f"ok   compile: {where}", flush=True)

        with open(log_path) as f:
            layout = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in f if "memory layout" in line]
        check(layout, "no `memory layout` line in the log")
        check(args.expect_code in layout[0], f"expected code `{args.expect_code}` in: {layout[0]}")
        print(f"smoke: {layout[0]}", flush=True)

        body = expect(base, "GET", "/hello?name=arm", 200).decode()
        check(body == "Nǐ hǎo, arm", f"/hello answered {body!r}")
        print("ok   http: /hello", flush=True)

        body = expect(base, "POST", "/api/exec/add/add", 200, "[2.5, 3.7]").decode()
        check(body == "6.2", f"add(2.5, 3.7) answered {body!r}")
        print("ok   http: add export", flush=True)

        doc = json.loads(expect(base, "GET", "/json2k", 200))
        check(len(doc["items"]) == doc["count"], f"json2k: {doc['count']} items announced, {len(doc['items'])} sent")
        print("ok   http: json2k", flush=True)

        opcode, payload = websocket_echo(ports["http"], "/ws-echo/ws", "hello from arm")
        check((opcode, payload) == (1, b"hello from arm"), f"ws-echo answered opcode {opcode} {payload!r}")
        print("ok   websocket: ws-echo round trip", flush=True)

        rules = '{"fields": {"n": {"type": "integer", "required": true, "max": 10}}}'
        stored = json.loads(expect(base, "PUT", "/rules/sets/limits", 200, rules))
        check(stored == {"name": "limits", "fields": 1}, f"rules PUT answered {stored}")
        read_back = expect(base, "GET", "/rules/sets/limits", 200).decode()
        check(read_back == rules, f"rules read back {read_back!r}")
        verdict = json.loads(expect(base, "POST", "/rules/validate/limits", 422, '{"n": 11}'))
        check(verdict["violations"] == [{"path": "$.n", "message": "must be at most 10"}], f"rules verdict {verdict}")
        print("ok   kv: rules write + read", flush=True)

        batch = '[{"device": "arm-1", "time": "2024-05-01T10:00:00Z", "temp": 21.5}]'
        result = json.loads(expect(base, "POST", "/etl/batch", 200, batch))
        check(result["stored"] == 1, f"etl batch answered {result}")
        rows = json.loads(expect(base, "GET", "/etl/query?device=arm-1", 200))["rows"]
        check(
            rows == [{"device": "arm-1", "ts": "2024-05-01T10:00:00.000Z", "temp_c": 21.5, "humidity": None}],
            f"etl query answered {rows}",
        )
        print("ok   sqlite: etl insert + select", flush=True)

        # Read holding registers 0..2 (transaction 0x0102, unit 1).
        reply = modbus_exchange(ports["tcp"], bytes.fromhex("0102 0000 0006 01 03 0000 0002".replace(" ", "")))
        want = bytes.fromhex("0102 0000 0007 01 03 04 0064 00c8".replace(" ", ""))
        check(reply == want, f"Modbus reply {reply.hex()}, expected {want.hex()}")
        print("ok   tcp: Modbus read holding registers", flush=True)

        reading = wait_for("a timer run's reading on sensors/7/reading", 120, lambda: subscriber.find("sensors/7/reading"))
        reading = json.loads(reading)
        check(reading["sensor"] == 7 and reading["run"] >= 1, f"timer reading {reading}")
        print("ok   timer: sensor-poll published a reading", flush=True)

        raw = bytes.fromhex("01 0102 67748580 0866 11ad 0ce4".replace(" ", ""))
        raw_file = os.path.join(work, "reading.bin")
        with open(raw_file, "wb") as f:
            f.write(raw)

        def transformed():
            # QoS 1: the trigger's persistent session keeps it once the
            # trigger has subscribed; published again until it is seen.
            subprocess.run(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(ports["mqtt"]), "-q", "1", "-t", "sensors/258/raw", "-f", raw_file],
                check=True,
                timeout=30,
            )
            return subscriber.find("sensors/258/json")

        converted = wait_for("mqtt-transform's output on sensors/258/json", 180, transformed, every_s=5)
        want = b'{"sensor":258,"time":1735689600,"temperature_c":21.5,"humidity_pct":45.25,"battery_mv":3300}'
        check(converted == want, f"mqtt-transform published {converted!r}")
        print("ok   mqtt: mqtt-transform through the embedded broker", flush=True)

        if host:
            refusal_checks(host, args.target, args.modules, work, admin, base, log_path)

        alive()
        print(f"smoke: all checks passed in {time.monotonic() - started:.0f} s", flush=True)
        return 0
    except SmokeFailure as err:
        print(f"FAIL {err}", file=sys.stderr, flush=True)
        print(f"---- gateway log ({log_path}), last 60 lines:", file=sys.stderr)
        with open(log_path) as f:
            sys.stderr.write("".join(f.readlines()[-60:]))
        return 1
    finally:
        if subscriber:
            subscriber.stop()
        if gateway.poll() is None:
            os.killpg(gateway.pid, signal.SIGTERM)
            try:
                gateway.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(gateway.pid, signal.SIGKILL)
                gateway.wait()
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="", help="emulator command line, e.g. 'qemu-arm -L /usr/arm-linux-gnueabihf'")
    parser.add_argument("--binary", required=True, help="the shanhai binary")
    parser.add_argument("--modules", required=True, help="folder with the example .wasm files")
    parser.add_argument("--ulimit-v", type=int, default=0, help="address-space limit in KiB (0: none)")
    parser.add_argument("--expect-code", default="", help="text the `memory layout` log line must contain")
    parser.add_argument("--host-binary", default="", help="this machine's shanhai: also check code compiled here for the box")
    parser.add_argument("--target", default="aarch64", choices=["aarch64", "armv7"], help="the box's architecture (for --host-binary)")
    parser.add_argument("--load-deadline", type=float, default=1800, help="seconds for every module to load")
    sys.exit(run(parser.parse_args()))


if __name__ == "__main__":
    main()
