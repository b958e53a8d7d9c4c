#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/TARGET/.

Seeds are small, meaningful inputs the fuzzer starts from: valid messages of
each kind, and one of each way to be wrong. The byte layout of each target's
input (a selector or parameters, then the bytes under test) is documented in
crates/abi/src/fuzzing.rs and crates/gateway/src/fuzzing.rs. Run it again
after changing a layout; the files are committed.
"""

import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def reset(target):
    shutil.rmtree(os.path.join(HERE, "corpus", target), ignore_errors=True)


# ABI envelopes: the golden vectors shared with the Go SDK, then each cut
# in half and given a hostile count.

VECTORS = json.load(open(os.path.join(ROOT, "sdk/go/testdata/vectors.json")))

ABI = {
    "abi_wire": {
        "http_request": 0,
        "http_response": 1,
        "call": 2,
        "ws_event": 3,
        "tcp_event": 4,
        "timer_event": 5,
    },
    "abi_mqtt": {"mqtt_message": 0, "mqtt_output": 1},
    "abi_state": {"key_page": 0, "sql_params": 1, "sql_result": 2},
}


def abi_seeds():
    for target, kinds in ABI.items():
        reset(target)
        for kind, selector in kinds.items():
            for vector in VECTORS[kind]:
                envelope = bytes.fromhex(vector["hex"])
                name = f"{kind}-{vector['name']}"
                write(target, name, bytes([selector]) + envelope)
                if len(envelope) > 2:
                    cut = envelope[: len(envelope) // 2]
                    write(target, name + "-truncated", bytes([selector]) + cut)
            # A count of 2^32 - 1 elements in a few bytes.
            hostile = {
                "http_response": struct.pack("<H", 200) + b"\xff\xff\xff\xff",
                "http_request": b"\x00\x00\x00\x00" * 4 + b"\xff\xff\xff\xff",
                "mqtt_output": b"\xff\xff\xff\xff",
                "key_page": b"\xff\xff\xff\xff",
                "sql_params": b"\xff\xff\xff\xff\x00",
                "sql_result": b"\x00" * 16 + b"\x00\x00\x00\x00\xff\xff\xff\xff",
            }.get(kind)
            if hostile is not None:
                write(target, f"{kind}-hostile-count", bytes([selector]) + hostile)
        if target == "abi_wire":
            write(target, "ws_event-unknown-type", bytes([3, 9]))
            write(target, "http_response-status-42", bytes([1]) + struct.pack("<H", 42) + bytes(4))
            write(target, "call-not-utf8", bytes([2, 1, 0, 0, 0, 0xFF]))
        if target == "abi_mqtt":
            def field(b):
                return struct.pack("<I", len(b)) + b

            head = field(b"sensors/1/raw") + field(b"t") + field(b"r-1")
            message = head + bytes([1, 0]) + struct.pack("<I", 1) + struct.pack("<I", 0)
            write(target, "mqtt_message-no-properties", bytes([0]) + message + b"payload")
            retained = head + bytes([0, 2]) + struct.pack("<I", 2) + struct.pack("<I", 0)
            write(target, "mqtt_message-retain-byte-2", bytes([0]) + retained)
            write(target, "mqtt_message-topic-not-utf8", bytes([0]) + field(b"\xc3("))
            write(target, "mqtt_output-empty", bytes([1]))
            write(target, "mqtt_output-zero-count", bytes([1]) + struct.pack("<I", 0))
            one = struct.pack("<I", 1) + field(b"out/x") + bytes([7, 1]) + field(b"{}")
            write(target, "mqtt_output-qos-7", bytes([1]) + one)
            write(target, "mqtt_output-trailing", bytes([1]) + one + b"!")
            write(target, "mqtt_output-payload-truncated", bytes([1]) + one[:-1])
        if target == "abi_state":
            write(target, "sql_params-bad-tag", bytes([1, 1, 0, 0, 0, 9]))
            nan = struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF)
            write(target, "sql_params-nan-payload", bytes([1, 1, 0, 0, 0, 2]) + nan)
            write(target, "key_page-trailing", bytes([0]) + bytes(8) + b"x")


# WebSocket: [limit lo, limit hi, seed] then client frames.

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 section 5.7


def frame(fin, opcode, payload, mask=MASK, masked=True, rsv=0, length=None):
    out = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if masked else 0
    n = len(payload)
    if length == "long" or n > 0xFFFF:
        out += bytes([bit | 127]) + struct.pack(">Q", n)
    elif n > 125:
        out += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        out += bytes([bit | n])
    if masked:
        out += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return out + payload


def ws_seeds():
    reset("ws_codec")
    big = struct.pack("<H", 4095) + b"\x07"
    small = struct.pack("<H", 16) + b"\x03"
    seeds = {
        "text-hello-rfc": big + frame(True, 0x1, b"Hello"),
        "binary-200": big + frame(True, 0x2, bytes(range(200))),
        "binary-16-bit-length": big + frame(True, 0x2, b"x" * 300),
        "binary-64-bit-length-non-minimal": big + frame(True, 0x2, b"abc", length="long"),
        "empty-binary": big + frame(True, 0x2, b""),
        "ping": big + frame(True, 0x9, b"are you there"),
        "pong-125": big + frame(True, 0xA, b"p" * 125),
        "close-empty": big + frame(True, 0x8, b""),
        "close-1000-done": big + frame(True, 0x8, b"\x03\xe8done"),
        "fragmented-text-ping-between": big
        + frame(False, 0x1, "✓✓".encode()[:4])
        + frame(True, 0x9, b"p")
        + frame(True, 0x0, "✓✓".encode()[4:]),
        "fragmented-binary-3": big
        + frame(False, 0x2, b"ab")
        + frame(False, 0x0, b"cd")
        + frame(True, 0x0, b"ef"),
        "stream-of-kinds": big
        + frame(True, 0x1, "whole ✓".encode())
        + frame(True, 0x9, b"")
        + frame(True, 0x2, b"\x00\xff")
        + frame(True, 0x8, b"\x0f\xa0bye"),
        "incomplete-frame": big + frame(True, 0x1, b"Hello")[:5],
        "incomplete-header": big + frame(True, 0x2, b"x" * 300)[:3],
        "unmasked": big + frame(True, 0x2, b"x", masked=False),
        "reserved-bits": big + frame(True, 0x2, b"x", rsv=4),
        "reserved-opcode-3": big + frame(True, 0x3, b"x"),
        "reserved-opcode-b": big + frame(True, 0xB, b""),
        "control-too-long": big + frame(True, 0x9, b"p" * 126),
        "fragmented-control": big + frame(False, 0x9, b""),
        "unexpected-continuation": big + frame(True, 0x0, b"x"),
        "expected-continuation": big + frame(False, 0x1, b"a") + frame(True, 0x1, b"b"),
        "length-msb-set": big + bytes([0x82, 0xFF]) + b"\x80" + bytes(7) + MASK,
        "hostile-length-2-62": big + bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 62),
        "close-one-byte": big + frame(True, 0x8, b"\x03"),
        "close-code-1005": big + frame(True, 0x8, struct.pack(">H", 1005)),
        "close-reason-not-utf8": big + frame(True, 0x8, b"\x03\xe8\xff"),
        "text-not-utf8": big + frame(True, 0x1, b"ok\xff"),
        "text-surrogate": big + frame(True, 0x1, b"\xed\xa0\x80"),
        "text-truncated-char": big
        + frame(False, 0x1, b"ok")
        + frame(True, 0x0, b"\xe2\x9c"),
        "too-large-for-limit": small + frame(True, 0x2, b"y" * 17),
        "reassembled-too-large": small + frame(False, 0x2, b"y" * 10) + frame(True, 0x0, b"y" * 7),
        "control-between-at-limit": small
        + frame(False, 0x2, b"y" * 6)
        + frame(True, 0x9, b"z" * 100)
        + frame(True, 0x0, b"y" * 10),
        "limit-zero-empty-message": b"\x00\x00\x01" + frame(True, 0x1, b""),
    }
    for name, data in seeds.items():
        write("ws_codec", name, data)


# TCP: [framing, parameter, max lo, max hi, seed] then the stream (for
# delimiter framing, the delimiter first).

LENGTH, DELIMITER, MODBUS = 0, 1, 2
READ_HOLDING = bytes([0, 7, 0, 0, 0, 6, 1, 3, 0, 0, 0, 2])


def tcp(framing, param, max_frame, stream, seed=5):
    return bytes([framing, param]) + struct.pack("<H", max_frame) + bytes([seed]) + stream


def tcp_seeds():
    reset("tcp_framer")
    seeds = {
        # param % 3: 0 -> 1-byte, 1 -> 2-byte, 2 -> 4-byte prefixes.
        "length-2-three-frames": tcp(LENGTH, 1, 16, b"\x00\x02hi\x00\x00\x00\x03abc\x00"),
        "length-1": tcp(LENGTH, 0, 255, b"\x05hello\x00\x01!"),
        "length-4": tcp(LENGTH, 2, 1023, b"\x00\x00\x00\x04ping\x00\x00\x00"),
        "length-too-large": tcp(LENGTH, 1, 16, b"\x00\x11"),
        "length-4-huge": tcp(LENGTH, 2, 1023, b"\xff\xff\xff\xff"),
        "length-max-zero": tcp(LENGTH, 1, 0, b"\x00\x00"),
        # param % 4 + 1 delimiter bytes, taken from the stream's start.
        "delimiter-crlf": tcp(DELIMITER, 1, 8, b"\r\none\r\ntwo\r\nthr"),
        "delimiter-newline": tcp(DELIMITER, 0, 64, b"\nping\nquit\n"),
        "delimiter-no-delimiter": tcp(DELIMITER, 1, 8, b"\r\n0123456789abc"),
        "delimiter-too-far": tcp(DELIMITER, 0, 4, b"\nabcdefgh\n"),
        "delimiter-exactly-max": tcp(DELIMITER, 0, 4, b"\nabcd\n"),
        "delimiter-overlapping": tcp(DELIMITER, 1, 16, b"aaaaaaa"),
        "delimiter-utf8-check-mark": tcp(DELIMITER, 2, 32, "✓ok✓✓no".encode()),
        "delimiter-4-bytes-split": tcp(DELIMITER, 3, 32, b"ENDXabcENDXdefEN", seed=1),
        "delimiter-empty-frames": tcp(DELIMITER, 0, 2, b";;;;"),
        "modbus-read-holding": tcp(MODBUS, 0, 260, READ_HOLDING),
        "modbus-two-adus": tcp(MODBUS, 0, 260, READ_HOLDING * 2),
        "modbus-partial": tcp(MODBUS, 0, 260, READ_HOLDING[:9]),
        "modbus-bad-protocol": tcp(MODBUS, 0, 260, bytes([0, 1, 0, 9, 0, 6, 1, 3])),
        "modbus-length-256": tcp(MODBUS, 0, 260, bytes([0, 1, 0, 0, 1, 0, 1, 3])),
        "modbus-length-1": tcp(MODBUS, 0, 260, bytes([0, 1, 0, 0, 0, 1, 1])),
        "modbus-over-max": tcp(MODBUS, 0, 8, READ_HOLDING),
        "modbus-write-multiple": tcp(
            MODBUS, 0, 260, bytes([0, 9, 0, 0, 0, 11, 1, 16, 0, 1, 0, 2, 4, 0, 10, 1, 2])
        ),
    }
    for name, data in seeds.items():
        write("tcp_framer", name, data)


# MQTT topics: filter 0xFF topic [0xFF template].


def topic_seeds():
    reset("mqtt_topic")
    cases = {
        "plus-match-template": ("sensors/+/raw", "sensors/t1/raw", "sensors/{1}/json"),
        "plus-no-match": ("sensors/+/raw", "sensors/t1/cooked", "x/{1}"),
        "two-plus-swapped": ("+/+", "a/b", "{2}/{1}"),
        "hash-rest": ("a/#", "a/b/c", "copy/{1}"),
        "hash-parent-level": ("sport/tennis/#", "sport/tennis", "t/{1}"),
        "hash-alone": ("#", "x/y", "all/{topic}"),
        "hash-dollar-topic": ("#", "$SYS/broker/load", "x"),
        "plus-dollar-topic": ("+/broker/load", "$SYS/broker/load", "x"),
        "dollar-literal": ("$SYS/#", "$SYS/broker", "sys/{1}"),
        "empty-level": ("a//b", "a//b", "same"),
        "plus-empty-level": ("a/+/c", "a//c", "out/{1}/end"),
        "trailing-slash": ("a/+", "a/", "out/{1}"),
        "plus-hash": ("+/#", "x/y/z", "{1}-{2}"),
        "topic-template": ("a/b", "a/b", "copy/{topic}"),
        "fixed-template": ("a/+", "a/x", "fixed"),
        "bad-hash-middle": ("a/#/c", "a/b/c", "x"),
        "bad-hash-in-level": ("a#", "a#", "x"),
        "bad-plus-in-level": ("a/b+", "a/b+", "x"),
        "bad-share-prefix": ("$share/g/a", "a", "x"),
        "bad-empty-filter": ("", "", "x"),
        "bad-nul": ("a\0", "a\0", "x"),
        "template-capture-out-of-range": ("a/+", "a/x", "out/{2}"),
        "template-capture-zero": ("a/+", "a/x", "out/{0}"),
        "template-name": ("a/+", "a/x", "out/{x}"),
        "template-unclosed": ("a/+", "a/x", "out/{1"),
        "template-stray-close": ("a/+", "a/x", "out/1}"),
        "template-wildcard-literal": ("a/+", "a/x", "out/+"),
        "template-hash-literal": ("a/+", "a/x", "out/#"),
        "template-empty": ("a/+", "a/x", ""),
        "template-leading-zero": ("a/+", "a/x", "out/{01}"),
        "unicode-levels": ("传感器/+/温度", "传感器/一号/温度", "出/{1}"),
    }
    for name, (filter_, topic, template) in cases.items():
        data = filter_.encode() + b"\xff" + topic.encode() + b"\xff" + template.encode()
        write("mqtt_topic", name, data)
    write("mqtt_topic", "no-template", b"a/+/c\xffa/b/c")


# Config: TOML text.


def config_seeds():
    reset("config")
    with open(os.path.join(ROOT, "examples/shanhai.toml"), "rb") as f:
        write("config", "examples-shanhai", f.read())
    seeds = {
        "empty": "",
        "server": '[server]\nlisten = "127.0.0.1:8080"\nmodules_dir = "./modules"\ncache_dir = ".shanhai/cache"\nwatch = true\n',
        "defaults-and-module": '[defaults]\ndeadline_ms = 5000\nmax_memory_mb = 64\n\n[modules.hello]\nfile = "hello.wasm"\nroutes = ["/greet", "/greet/*"]\nmax_instances = 4\nmin_instances = 1\n[modules.hello.vars]\ngreeting = "Nǐ hǎo"\n',
        "grants": '[modules.rules.grants]\nkv = true\nkv_stores = ["fleet"]\nsqlite = true\nsqlite_databases = ["etl"]\nhttp = ["api.example.com", "127.0.0.1:8081", "*.internal.example"]\nmqtt_publish = ["devices/+/cmd"]\ngpio_in = [17]\ngpio_out = [18]\n',
        "secrets": '[modules.crypto.vars]\nregion = "cn-east"\n[modules.crypto.secrets]\nplain = "no variable"\n',
        "canary": '[canary]\nwindow_s = 60\nmax_error_rate = 0.005\nmin_requests = 100\nlatency_factor = 1.5\nlatency_floor_ms = 1\nsticky_header = "x-shanhai-key"\n\n[modules.api.canary]\nfile = "api-v2.wasm"\nweight = 12.5\n',
        "websocket": '[websocket]\nmax_message_bytes = 65536\nping_interval_ms = 30000\npeer_timeout_ms = 60000\nsend_queue_messages = 64\nsend_queue_bytes = 1048576\nmax_connections = 1000\n\n[modules.chat.websocket]\nroutes = ["/chat"]\nmax_connections = 100\n',
        "timers": '[timers.poll]\nmodule = "sensor-poll"\nevery_ms = 10000\njitter_ms = 500\npayload = "1,2,3"\n\n[timers.nightly]\nmodule = "etl"\ncron = "0 0 3 * * *"\noverlap = true\n',
        "timer-both-schedules": '[timers.t]\nmodule = "m"\nevery_ms = 10\ncron = "* * * * * *"\n',
        "tcp": '[tcp.plc]\nlisten = "127.0.0.1:5020"\nmodule = "modbus"\nframing = "modbus"\n\n[tcp.lines]\nlisten = "127.0.0.1:7000"\nmodule = "lines"\nframing = "delimiter"\ndelimiter = "\\r\\n"\nmax_frame_bytes = 4096\nidle_timeout_ms = 0\nmax_connections = 16\n\n[tcp.len]\nlisten = "[::1]:7001"\nmodule = "len"\nframing = "length"\nlength_bytes = 2\n',
        "tcp-bad-length-bytes": '[tcp.x]\nlisten = "127.0.0.1:1"\nmodule = "m"\nframing = "length"\nlength_bytes = 3\n',
        "mqtt-embedded": '[mqtt]\nlisten = "127.0.0.1:1883"\nlisten_v5 = "127.0.0.1:0"\nkeep_alive_s = 30\n\n[mqtt.triggers.raw]\nfilter = "sensors/+/raw"\nmodule = "mqtt-transform"\noutput_topic = "sensors/{1}/json"\nqos = 1\nmax_attempts = 3\nretry_initial_ms = 100\nretry_max_ms = 1000\ndead_letter_topic = "dead/{topic}"\n',
        "mqtt-external-shared": '[mqtt]\nurl = "mqtt://broker.local:1883"\nclient_id = "gw-a"\nusername = "gw"\npassword_env = "SHANHAI_MQTT_PASSWORD"\n\n[mqtt.triggers.jobs]\nfilter = "jobs/+"\nmodule = "worker"\nshared_group = "workers"\n',
        "mqtt-bad-template": '[mqtt]\n[mqtt.triggers.t]\nfilter = "a/+"\nmodule = "m"\noutput_topic = "out/{2}"\n',
        "state-redis": '[state]\ndata_dir = ".shanhai/data"\n\n[kv]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:6379/0"\ncache_bytes = 16777216\nredis_cache_ttl_ms = 1000\nmax_value_bytes = 1048576\n',
        "sqlite-and-http": '[sqlite]\ntimeout_ms = 1000\nmax_rows = 10000\nmax_result_bytes = 4194304\n\n[outbound_http]\ntimeout_ms = 10000\nmax_response_bytes = 4194304\n\n[gpio]\nsysfs_root = "/sys/class/gpio"\n',
        "runtime": '[runtime]\nfuel = true\ntotal_instances = 1000\nepoch_tick_ms = 10\nmemory_keep_resident_kb = 64\nmemory_strategy = "auto"\ninit_deadline_ms = 10000\ncompile_concurrency = 2\n',
        "admin-signing": '[admin]\nlisten = "127.0.0.1:9090"\ntoken_env = "SHANHAI_ADMIN_TOKEN"\n\n[signing]\nrequire_signed = false\ntrusted_keys = []\n',
        "unknown-key": '[server]\nlisten = "127.0.0.1:8080"\nlistne = "oops"\n',
        "bad-module-name": '[modules."a b"]\nroutes = ["/x"]\n',
        "bad-route": '[modules.a]\nroutes = ["/api/exec/x"]\n',
        "min-over-max": "[defaults]\nmin_instances = 5\nmax_instances = 2\n",
        "memory-over-4g": "[defaults]\nmax_memory_mb = 5000\n",
        "canary-weight-zero": '[modules.a.canary]\nfile = "a2.wasm"\nweight = 0.0\n',
        "float-special": "[canary]\nmax_error_rate = nan\nlatency_factor = inf\n",
        "inline-tables": 'modules = { a = { routes = ["/a"], vars = { k = "v" } } }\n',
    }
    for name, text in seeds.items():
        write("config", name, text)


if __name__ == "__main__":
    abi_seeds()
    ws_seeds()
    tcp_seeds()
    topic_seeds()
    config_seeds()
