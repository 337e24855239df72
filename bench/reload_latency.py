#!/usr/bin/env python3
"""Time from a plugin file written to its generation answering.

Starts a broker on loopback with one plugin, renames a new version of
the plugin into place N times (as editors save), and polls
/admin/plugins until the generation number moves.  Prints the median,
p90 and max in milliseconds, and the broker's resident memory before
and after.  Usage: python3 bench/reload_latency.py [BINARY] [N]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/authkit-broker"
N = int(sys.argv[2]) if len(sys.argv) > 2 else 60
PLUGIN = "local V = %d\nreturn {resolve_identity = function() " \
         "return {id = 'a' .. V} end}\n"


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])


def main():
    work = tempfile.mkdtemp(prefix="reload-bench.")
    plugins = os.path.join(work, "plugins")
    os.mkdir(plugins)
    with open(os.path.join(plugins, "10-v.lua"), "w") as f:
        f.write(PLUGIN % 0)
    with open(os.path.join(work, "cfg.lua"), "w") as f:
        f.write('return {log_level = "warn", data_dir = "%s/data"}\n' % work)
    log = open(os.path.join(work, "log"), "w")
    broker = subprocess.Popen(
        [BIN, "--config", os.path.join(work, "cfg.lua"), "--plugins",
         plugins, "--listen", "127.0.0.1:0", "--admin-listen",
         "127.0.0.1:28181", "--pica-url", "http://127.0.0.1:9"],
        stderr=log, env=dict(os.environ, PICA_SECRET_KEY="sk_test_1_x"))
    url = "http://127.0.0.1:28181/admin/plugins"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                gen = json.load(urllib.request.urlopen(url))["generation"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        before = rss_kb(broker.pid)
        samples = []
        for v in range(1, N + 1):
            tmp = os.path.join(plugins, ".10-v.tmp")
            with open(tmp, "w") as f:
                f.write(PLUGIN % v)
            t0 = time.monotonic()
            os.rename(tmp, os.path.join(plugins, "10-v.lua"))
            while json.load(urllib.request.urlopen(url))["generation"] == gen:
                if time.monotonic() - t0 > 5:
                    raise RuntimeError("reload %d never went live" % v)
            samples.append((time.monotonic() - t0) * 1000)
            gen += 1
            time.sleep(0.05)
        samples.sort()
        print("reloads %d: median %.1f ms, p90 %.1f ms, max %.1f ms" % (
            N, statistics.median(samples), samples[int(N * 0.9) - 1],
            samples[-1]))
        print("RSS %d kB before, %d kB after" % (before, rss_kb(broker.pid)))
    finally:
        broker.terminate()
        broker.wait(10)
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
