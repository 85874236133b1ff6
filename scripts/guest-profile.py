# gdb-multiarch -batch -x scripts/guest-profile.py (run by scripts/guest-profile,
# which starts QEMU with the bench image stopped and a gdb stub on a port).
#
# Single-steps one request of the benchmark in the guest and counts the
# instructions of each function it runs: the bench PD's (the client library),
# memsrv's, and the kernel's as one line. User-mode code is told apart by the
# address space it runs in (VTTBR_EL2, the kernel runs at EL2 on this board),
# since every PD is linked at the same addresses.
#
# Settings, from the environment (scripts/guest-profile sets them):
#   BENCH_ELF, MEMSRV_ELF   the ELFs in the image, for their symbols
#   PORT                    QEMU's gdb stub
#   START                   "handle:LABEL[:WORD0]" - memsrv's Server::handle
#                           for op LABEL (and first request word WORD0), or
#                           "client:FUNCTION" - a bench PD function (its
#                           demangled name, e.g. the client library's
#                           `<capbuf_client::Client<capbuf_microkit::MicrokitSys>>::alloc`)
#   NTH                     which matching call to trace (the first rounds
#                           differ: 6 is past them)
#   OUT                     the report
import bisect
import collections
import os
import subprocess

import gdb

KERNEL_BASE = 0x8000000000  # seL4's EL2 window on qemu_virt_aarch64


def symbols(elf):
    table = []
    out = subprocess.run(["llvm-nm", "-n", "-C", elf], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tT":
            table.append((int(parts[0], 16), parts[2]))
    return table, [address for address, _ in table]


PDS = {"bench": symbols(os.environ["BENCH_ELF"]), "memsrv": symbols(os.environ["MEMSRV_ELF"])}


def function(pd, pc):
    table, addresses = PDS[pd]
    i = bisect.bisect_right(addresses, pc) - 1
    return table[i][1] if i >= 0 else "?"


def reg(name):
    return int(gdb.parse_and_eval("$" + name))


def space():
    return reg("VTTBR_EL2"), reg("TTBR0_EL1")


kind, _, what = os.environ["START"].partition(":")
nth = int(os.environ.get("NTH", "6"))
gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("target remote :" + os.environ["PORT"])
if kind == "handle":
    # memsrv's debug information, for Server::handle's arguments.
    gdb.execute("file " + os.environ["MEMSRV_ELF"], to_string=True)
    start_pd = "memsrv"
    label, _, word = what.partition(":")
    names = [a for a, n in PDS["memsrv"][0] if "Server<memsrv::SeL4" in n and n.endswith(">>::handle")]
else:
    start_pd = "bench"
    names = [a for a, n in PDS["bench"][0] if n == what]
if not names:
    raise gdb.GdbError("no such function in the ELF: " + what)
gdb.execute("break *%#x" % names[0])
seen = 0
while seen < nth:
    gdb.execute("continue", to_string=True)
    if kind == "handle":
        # Every PD is linked at the same addresses: a stop may be another
        # PD's code there; the debug information's names then fail to read.
        try:
            if int(gdb.parse_and_eval("label")) != int(label):
                continue
            if word and int(gdb.parse_and_eval("words.data_ptr[0]")) != int(word, 0):
                continue
        except gdb.error:
            continue
    seen += 1
home = space()
ret, sp = reg("x30"), reg("sp")
gdb.execute("delete")

counts = collections.Counter()
runs = []  # consecutive instructions in one function: [name, count]
pd, was_kernel, total = start_pd, False, 0
while True:
    pc = reg("pc")
    kernel = pc >= KERNEL_BASE
    if kernel:
        name = "kernel"
    else:
        if was_kernel:
            pd = start_pd if space() == home else ("memsrv" if start_pd == "bench" else "another PD")
        if pd == start_pd and pc == ret and reg("sp") == sp:
            break
        name = pd + ": " + (function(pd, pc) if pd in PDS else "?")
    was_kernel = kernel
    counts[name] += 1
    total += 1
    if runs and runs[-1][0] == name:
        runs[-1][1] += 1
    else:
        runs.append([name, 1])
    gdb.execute("stepi", to_string=True)

with open(os.environ["OUT"], "w") as out:
    user = total - counts["kernel"]
    out.write(f"{total} instructions stepped: {user} in user mode, {counts['kernel']} in the kernel\n")
    out.write("(the kernel count has entries that stepping adds, about 540 instructions before each of\n")
    out.write(" memsrv's invocations on this board, which make qemu-bench's -icount figures do not:\n")
    out.write(" take the kernel's cost from make qemu-bench, the user-mode functions from here)\n\n")
    out.write("per function:\n")
    for name, count in counts.most_common():
        out.write(f"{count:8} {name}\n")
    out.write("\nin order:\n")
    for name, count in runs:
        out.write(f"{count:8} {name}\n")
gdb.execute("kill")
