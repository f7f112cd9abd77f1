#!/usr/bin/env python3
"""Flash and static RAM of a 32-bit little-endian ELF (no binutils needed).

flash = allocated sections with contents (code, read-only data, .data's load image)
ram   = allocated writable sections (.data, .bss, .uninit); the stack is extra.

With `--u32 SYMBOL`, also prints the u32 array stored at SYMBOL (e.g. sizes
the firmware computed with `size_of` at compile time). With `--wharf-state
SYMBOL`, reads the firmware example's `WHARF_STATE_SIZES` table (layout in
examples/firmware/src/main.rs) and prints the pool state's cost per slot.
"""
import struct
import sys

SHF_WRITE, SHF_ALLOC = 0x1, 0x2
SHT_SYMTAB, SHT_NOBITS = 2, 8


def read_sections(data):
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        sys.exit("not a 32-bit little-endian ELF")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    hdrs = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = hdrs[shstrndx][4]
    out = []
    for h in hdrs:
        name = data[strtab + h[0]:data.index(b"\0", strtab + h[0])].decode()
        out.append(dict(name=name, type=h[1], flags=h[2], addr=h[3], offset=h[4], size=h[5], link=h[6]))
    return out


def symbol_u32s(data, secs, wanted):
    for sec in secs:
        if sec["type"] != SHT_SYMTAB:
            continue
        strtab = secs[sec["link"]]["offset"]
        for i in range(sec["size"] // 16):
            name, value, size, _info, _other, shndx = struct.unpack_from("<IIIBBH", data, sec["offset"] + i * 16)
            sym = data[strtab + name:data.index(b"\0", strtab + name)].decode()
            if sym == wanted and 0 < shndx < len(secs):
                home = secs[shndx]
                off = home["offset"] + value - home["addr"]
                return list(struct.unpack_from(f"<{size // 4}I", data, off))
    sys.exit(f"symbol {wanted} not found")


def main(argv):
    path = argv[1]
    data = open(path, "rb").read()
    secs = read_sections(data)
    flash = ram = 0
    for s in secs:
        if not s["flags"] & SHF_ALLOC or s["size"] == 0:
            continue
        in_flash = s["type"] != SHT_NOBITS
        in_ram = bool(s["flags"] & SHF_WRITE)
        flash += s["size"] if in_flash else 0
        ram += s["size"] if in_ram else 0
        where = "+".join(w for w, on in (("flash", in_flash), ("ram", in_ram)) if on)
        print(f"  {s['name']:<16} {s['size']:>8}  {where}")
    print(f"flash: {flash} bytes ({flash / 1024:.1f} KiB), static RAM: {ram} bytes ({ram / 1024:.1f} KiB)")
    if len(argv) > 3 and argv[2] == "--u32":
        print(f"{argv[3]}: {symbol_u32s(data, secs, argv[3])}")
    if len(argv) > 3 and argv[2] == "--wharf-state":
        v = symbol_u32s(data, secs, argv[3])
        print(f"{argv[3]}: {v}")
        if len(v) != 8:
            sys.exit(f"{argv[3]}: expected 8 sizes, found {len(v)}")
        example, base, conns, waiters, routes, base_h, conns_h, routes_h = v
        print(f"pool state of the example: {example} bytes")
        print(f"pool state, one slot of each kind (no buffers): {base} bytes")
        print(f"per connection slot: {(conns - base) / 16:g} bytes + RX + TX")
        print(f"per waiter slot: {(waiters - base) / 16:g} bytes")
        print(f"per route slot: {(routes - base) / 16:g} bytes")
        print(f"with 32-byte runtime host names: per connection slot {(conns_h - base_h) / 16:g} bytes,"
              f" per route slot {(routes_h - base_h) / 16:g} bytes")


if __name__ == "__main__":
    main(sys.argv)
