"""Which lane runs each test executable, from cargo's JSON build messages.

    python3 scripts/test-plan.py ROOT BUILD.json [LANE ...]

prints "lane name directory executable", one line per test executable (only the lanes given, if
any). Lanes, as scripts/test.sh runs them at once:
  1. the crates' own tests (then the doctests);
  2. tests/multi_host.rs, then every other end-to-end binary;
  3. tests/base_reproducible.rs (each base debootstrapped twice), then tests/python_sandbox.rs;
  4. tests/trains_py_r.rs, which waits on the bases' lock for lane 3's first build of each base
     and then runs its trains while lane 3 rebuilds them.
"""
import json
import os
import sys

root, build = sys.argv[1], sys.argv[2]
wanted = set(int(lane) for lane in sys.argv[3:])
LANES = {"multi_host": 2, "base_reproducible": 3, "python_sandbox": 3, "trains_py_r": 4}
ORDER = ["multi_host", "base_reproducible", "python_sandbox", "trains_py_r"]

found = {}
for line in open(build):
    message = json.loads(line)
    if message.get("reason") != "compiler-artifact" or not message.get("executable"):
        continue
    if not message.get("profile", {}).get("test"):
        continue
    directory = os.path.dirname(message["manifest_path"])
    name = message["target"]["name"]
    end_to_end = directory == os.path.join(root, "tests")
    lane = LANES.get(name, 2) if end_to_end else 1
    order = ORDER.index(name) if end_to_end and name in ORDER else len(ORDER)
    found[message["executable"]] = (lane, order, name, directory)
for executable, (lane, _, name, directory) in sorted(found.items(), key=lambda item: item[1]):
    if not wanted or lane in wanted:
        print(lane, name, directory, executable)
