#!/usr/bin/env python3
"""ct_ref.py -- an independent reference reader/writer for compressed-tensors and DeepSeek FP8.

Written from docs/spec alone (formats.md Part B and Part C, deepseek-v32.md 1.7 / 3.1 / 3.5), with
no code shared with dsq, so that dsq's reader and writer can be checked against it.  Python 3
standard library only.

  python3 tests/ct_ref.py decode SRC_DIR OUT_DIR
      SRC_DIR: a Hugging Face folder (plain, DeepSeek native "fp8", or "compressed-tensors").
      OUT_DIR/model.safetensors gets every tensor as F32 under its HF name (quantized modules as
      P.weight, dequantized exactly), sorted by name; OUT_DIR/config.json = the source config
      without quantization_config; tokenizer.json, tokenizer_config.json, generation_config.json
      are copied when present.

  python3 tests/ct_ref.py encode SRC_DIR OUT_DIR --scheme S
      SRC_DIR: a BF16/F32 DeepSeek-V3/V3.2 folder without quantization_config.  OUT_DIR: a
      compressed-tensors checkpoint in two shards.  S is one of: kimi-int4, w4a16-asym, w8a16,
      int8-int, fp8-block, fp8-channel, fp8-tensor, mixed.

What decode reads (formats.md C.1-C.5, C.7; deepseek-v32.md 3.1, 3.5):
  * no quantization_config: BF16 / F16 / F32 tensors, widened exactly (F32 and BF16 bit for bit).
  * quant_method "fp8": every F8_E4M3 P.weight with its F32 P.weight_scale_inv
    [ceil(out/b0), ceil(in/b1)], b = weight_block_size (default [128, 128]); x = e4m3(q) * s.
  * quant_method "compressed-tensors", quantization_status "compressed": config_groups matched in
    order against module names ("Linear" = any 2-D weight module but embeddings and norms, exact
    names, "re:" with re.match), ignore list first; top-level format or per-group format
    ("mixed-precision").  Formats: pack-quantized (int4 / int8; strategy group, channel or
    tensor; symmetric, or asymmetric with zero points packed along dim 0), int-quantized (I8 codes,
    optional unpacked zero points), float-quantized (F8_E4M3; tensor, channel, group, block),
    dense.
    Scales F32 / F16 / BF16 (dtype from the header); weight_shape I32 or I64.
  Refused: g_idx / actorder group, sparsity or transform configs, kv_cache_scheme, other formats,
  and any tensor the config does not account for.

Every inconsistency ends the program with status 1 and one line on stderr naming the file and the
tensor.  Output is built in OUT_DIR.tmp and renamed to OUT_DIR at the end, never left half written.
"""

import argparse
import array
import json
import math
import os
import re
import shutil
import struct
import sys
from bisect import bisect_left

PROG = "ct_ref"
LITTLE = sys.byteorder == "little"
FLT_MAX = 3.4028234663852886e38


class Fail(Exception):
    pass


def fail(where, msg):
    raise Fail("%s: %s" % (where, msg))


def ceil_div(a, b):
    return -(-a // b)


# --------------------------------------------------------------------------------------------
# Number formats
# --------------------------------------------------------------------------------------------

def _e4m3_value(b):
    s = -1.0 if b & 0x80 else 1.0
    e = (b >> 3) & 15
    m = b & 7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return s * m * 2.0 ** -9
    return s * (8 + m) * 2.0 ** (e - 10)


E4M3 = [_e4m3_value(b) for b in range(256)]       # exact values as Python floats

# Encoder tables: every finite code sorted by value (one zero), and the midpoints between
# neighbours (exact in double).  Ties go to the code with an even mantissa (code & 1 == 0).
_ENC_CODES = [0x80 | m for m in range(0x7E, 0, -1)] + [0] + list(range(1, 0x7F))
_ENC_VALS = [E4M3[c] for c in _ENC_CODES]
_ENC_MIDS = [(_ENC_VALS[i] + _ENC_VALS[i + 1]) / 2 for i in range(len(_ENC_VALS) - 1)]
_ENC_NMID = len(_ENC_MIDS)


def fp8_code(a):
    """E4M3FN code of the double a: round to nearest even, saturating at +-448, never NaN."""
    i = bisect_left(_ENC_MIDS, a)
    if i < _ENC_NMID and _ENC_MIDS[i] == a:
        c = _ENC_CODES[i]
        if c & 1:
            c = _ENC_CODES[i + 1]
    else:
        c = _ENC_CODES[i]
    if c == 0 and (a < 0 or math.copysign(1.0, a) < 0):
        c = 0x80
    return c


def round_f32(x, where):
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        fail(where, "value %r overflows f32" % x)


def round_bf16(x, where):
    """(value, bits) of the double x rounded to bfloat16, round to nearest even (from the double,
    not through f32)."""
    if x != x or math.isinf(x):
        fail(where, "non-finite scale %r" % x)
    if x == 0:
        return x, (0x8000 if math.copysign(1.0, x) < 0 else 0)
    m, e = math.frexp(abs(x))                       # |x| = m * 2^e, 0.5 <= m < 1
    qe = max(e - 8, -133)                           # 8 significant bits; subnormal quantum 2^-133
    r = round(math.ldexp(abs(x), -qe))              # exact scaling, round half even
    v = math.ldexp(r, qe)
    if v > 3.3895313892515355e38:
        fail(where, "value %r overflows bf16" % x)
    v = math.copysign(v, x)
    bits = struct.unpack("<I", struct.pack("<f", v))[0]
    assert bits & 0xFFFF == 0
    return v, bits >> 16


_F16_TABLE = None


def _f16_table():
    """65536 entries: the 4 little-endian bytes of the f32 equal to each f16 bit pattern (NaN
    payloads kept, shifted like a hardware widening)."""
    global _F16_TABLE
    if _F16_TABLE is None:
        t = []
        for h in range(65536):
            s = (h >> 15) << 31
            e = (h >> 10) & 31
            m = h & 1023
            if e == 31:
                bits = s | 0x7F800000 | (m << 13)
            elif e == 0:
                bits = s | (struct.unpack("<I", struct.pack("<f", m * 2.0 ** -24))[0])
            else:
                bits = s | ((e - 15 + 127) << 23) | (m << 13)
            t.append(struct.pack("<I", bits))
        _F16_TABLE = t
    return _F16_TABLE


def _typed(code, data):
    a = array.array(code)
    a.frombytes(data)
    if not LITTLE:
        a.byteswap()
    return a


def bf16_to_f32_bytes(data):
    data = bytes(data)
    out = bytearray(2 * len(data))
    out[2::4] = data[0::2]
    out[3::4] = data[1::2]
    return bytes(out)


def widen_to_f32_bytes(t):
    """Exact F32 bytes of a BF16 / F16 / F32 tensor (F32 and BF16 keep every bit, NaN included)."""
    if t.dtype == "F32":
        return bytes(t.data)
    if t.dtype == "BF16":
        return bf16_to_f32_bytes(t.data)
    if t.dtype == "F16":
        tab = _f16_table()
        return b"".join(map(tab.__getitem__, _typed("H", bytes(t.data))))
    fail(t.where(), "dtype %s cannot be widened to F32 (expected BF16, F16 or F32)" % t.dtype)


def float_values(t):
    """Python floats of a BF16 / F16 / F32 tensor."""
    if t.dtype == "F32":
        return _typed("f", bytes(t.data)).tolist()
    if t.dtype == "BF16":
        return _typed("f", bf16_to_f32_bytes(t.data)).tolist()
    if t.dtype == "F16":
        return [v for (v,) in struct.iter_unpack("<e", bytes(t.data))]
    fail(t.where(), "dtype %s is not a float type (expected BF16, F16 or F32)" % t.dtype)


def int_values(t):
    code = {"I8": "b", "I32": "i", "I64": "q"}.get(t.dtype)
    if code is None:
        fail(t.where(), "dtype %s is not an integer type" % t.dtype)
    if array.array(code).itemsize != DTYPE_BITS[t.dtype] // 8:
        fmt = {"I8": "<b", "I32": "<i", "I64": "<q"}[t.dtype]
        return [v for (v,) in struct.iter_unpack(fmt, bytes(t.data))]
    return _typed(code, bytes(t.data)).tolist()


# --------------------------------------------------------------------------------------------
# safetensors (formats.md Part B, deepseek-v32.md 1.4 / 1.7)
# --------------------------------------------------------------------------------------------

DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8,
    "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64,
    "U64": 64,
}
FLOAT_DTYPES = ("F32", "F16", "BF16")


class Tensor:
    __slots__ = ("name", "dtype", "shape", "data", "file")

    def __init__(self, name, dtype, shape, data, file):
        self.name, self.dtype, self.shape, self.data, self.file = name, dtype, shape, data, file

    def where(self):
        return "%s: %s" % (self.file, self.name)


class _DupKey(Exception):
    pass


def _no_dup(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise _DupKey(k)
        d[k] = v
    return d


def _bad_constant(c):
    raise ValueError("non-standard JSON constant %s" % c)


def load_json(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        fail(path, "cannot read: %s" % e.strerror)
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_dup,
                          parse_constant=_bad_constant)
    except _DupKey as e:
        fail(path, "duplicate JSON key %r" % e.args[0])
    except (UnicodeDecodeError, ValueError) as e:
        fail(path, "invalid JSON: %s" % e)


def _is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_safetensors(path):
    """{name: Tensor} of one file, after every check of Part B."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        fail(path, "cannot read: %s" % e.strerror)
    size = len(buf)
    if size < 8:
        fail(path, "header too small (%d bytes)" % size)
    n = struct.unpack_from("<Q", buf, 0)[0]
    if n > 100000000:
        fail(path, "header too large (%d bytes)" % n)
    if 8 + n > size:
        fail(path, "invalid header length %d for a %d-byte file" % (n, size))
    try:
        text = buf[8:8 + n].decode("utf-8")
    except UnicodeDecodeError:
        fail(path, "header is not valid UTF-8")
    if not text.startswith("{"):
        fail(path, "header does not start with '{'")
    try:
        hdr, end = json.JSONDecoder(object_pairs_hook=_no_dup,
                                    parse_constant=_bad_constant).raw_decode(text)
    except _DupKey as e:
        fail(path, "duplicate key %r in header" % e.args[0])
    except ValueError as e:
        fail(path, "header deserialization error: %s" % e)
    if text[end:].strip(" "):
        fail(path, "header has bytes other than space padding after the JSON object")
    if not isinstance(hdr, dict):
        fail(path, "header is not a JSON object")
    data0 = 8 + n
    mv = memoryview(buf)
    tensors = {}
    spans = []
    for name, info in hdr.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                fail(path, "__metadata__ must be an object of strings")
            continue
        w = "%s: %s" % (path, name)
        if not isinstance(info, dict):
            fail(w, "header entry is not an object")
        for key in ("dtype", "shape", "data_offsets"):
            if key not in info:
                fail(w, "header entry lacks %r" % key)
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dt, str) or dt not in DTYPE_BITS:
            fail(w, "unknown dtype %r" % (dt,))
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            fail(w, "shape must be an array of non-negative integers")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_uint(o) for o in offs)):
            fail(w, "data_offsets must be two non-negative integers")
        b, e = offs
        if e < b:
            fail(w, "invalid offsets [%d, %d]" % (b, e))
        numel = 1
        for d in shape:
            numel *= d
        nbits = numel * DTYPE_BITS[dt]
        if nbits % 8:
            fail(w, "misaligned slice: %d elements of %s is not a whole number of bytes"
                 % (numel, dt))
        if e - b != nbits // 8:
            fail(w, "data_offsets [%d, %d] hold %d bytes but %s %s needs %d"
                 % (b, e, e - b, dt, shape, nbits // 8))
        spans.append((b, e, name))
        tensors[name] = Tensor(name, dt, list(shape), mv[data0 + b:data0 + e], path)
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            fail("%s: %s" % (path, name),
                 "invalid offset: begins at %d, previous tensor ends at %d" % (b, pos))
        pos = e
    if data0 + pos != size:
        fail(path, "data section is %d bytes but the tensors cover %d" % (size - data0, pos))
    return tensors


def load_model(src):
    """{name: Tensor} over all shards of a model folder, with the index checked."""
    idx_path = os.path.join(src, "model.safetensors.index.json")
    single = os.path.join(src, "model.safetensors")
    if os.path.exists(idx_path):
        idx = load_json(idx_path)
        if not isinstance(idx, dict) or not isinstance(idx.get("weight_map"), dict):
            fail(idx_path, "no weight_map object")
        wm = idx["weight_map"]
        if not wm:
            fail(idx_path, "weight_map is empty")
        for name, shard in wm.items():
            if (not isinstance(shard, str) or not shard or "/" in shard or "\\" in shard
                    or shard in (".", "..")):
                fail(idx_path, "weight_map[%r] is not a plain file name: %r" % (name, shard))
        tensors = {}
        for shard in sorted(set(wm.values())):
            p = os.path.join(src, shard)
            if not os.path.isfile(p):
                fail(idx_path, "shard %s listed in weight_map does not exist" % shard)
            st = read_safetensors(p)
            for name, t in st.items():
                if name in tensors:
                    fail("%s: %s" % (p, name), "tensor also in %s" % tensors[name].file)
                if wm.get(name) != shard:
                    fail("%s: %s" % (p, name), "tensor is in this shard but weight_map says %r"
                         % (wm.get(name),))
                tensors[name] = t
        for name, shard in wm.items():
            if name not in tensors:
                fail("%s: %s" % (os.path.join(src, shard), name),
                     "tensor listed in weight_map is missing from the shard")
        meta = idx.get("metadata")
        if isinstance(meta, dict) and "total_size" in meta:
            ts = meta["total_size"]
            real = sum(len(t.data) for t in tensors.values())
            if not _is_uint(ts) or ts != real:
                fail(idx_path, "metadata.total_size %r but the tensors hold %d bytes" % (ts, real))
        return tensors
    if os.path.exists(single):
        return read_safetensors(single)
    fail(src, "neither model.safetensors.index.json nor model.safetensors found")


def write_safetensors(path, entries):
    """entries: (name, dtype, shape, producer) in file order; producer() returns the bytes."""
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    sizes = []
    for name, dt, shape, _ in entries:
        numel = 1
        for d in shape:
            numel *= d
        nb = numel * DTYPE_BITS[dt] // 8
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
        sizes.append(nb)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for (name, dt, shape, prod), nb in zip(entries, sizes):
            data = prod()
            if len(data) != nb:
                raise AssertionError("%s: produced %d bytes, expected %d" % (name, len(data), nb))
            f.write(data)
    return off


# --------------------------------------------------------------------------------------------
# Output directory (built in OUT.tmp, renamed at the end)
# --------------------------------------------------------------------------------------------

OUR_FILES = re.compile(r"^(config\.json|model\.safetensors|model-\d+-of-\d+\.safetensors|"
                       r"model\.safetensors\.index\.json|tokenizer\.json|tokenizer_config\.json|"
                       r"generation_config\.json)$")
COPIED_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")


class OutDir:
    def __init__(self, src, out):
        self.out = os.path.abspath(out.rstrip("/") or out)
        self.tmp = self.out + ".tmp"
        if os.path.realpath(self.out) == os.path.realpath(src):
            fail(out, "output folder is the source folder")
        if os.path.lexists(self.out):
            if not os.path.isdir(self.out) or os.path.islink(self.out):
                fail(out, "exists and is not a folder")
            other = [f for f in os.listdir(self.out) if not OUR_FILES.match(f)]
            if other:
                fail(out, "exists and holds files this tool does not write (%s); refusing to "
                     "replace it" % other[0])
        if os.path.lexists(self.tmp):
            shutil.rmtree(self.tmp)
        os.makedirs(self.tmp)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def commit(self):
        if os.path.lexists(self.out):
            shutil.rmtree(self.out)
        os.rename(self.tmp, self.out)

    def abort(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def copy_side_files(src, od):
    for name in COPIED_FILES:
        p = os.path.join(src, name)
        if os.path.isfile(p):
            shutil.copyfile(p, od.path(name))


# --------------------------------------------------------------------------------------------
# compressed-tensors quantization_config (formats.md C.1)
# --------------------------------------------------------------------------------------------

SUPPORTED_FORMATS = ("pack-quantized", "int-quantized", "float-quantized", "dense")
KNOWN_FORMATS = SUPPORTED_FORMATS + ("naive-quantized", "marlin-24", "nvfp4-pack-quantized",
                                     "mxfp4-pack-quantized", "mixed-precision", "sparse-bitmask",
                                     "sparse-24-bitmask")
COMPANION_SUFFIXES = (".weight_packed", ".weight_scale", ".weight_zero_point", ".weight_shape",
                      ".weight_g_idx", ".weight_scale_inv", ".weight_global_scale",
                      ".input_scale", ".input_zero_point", ".input_global_scale",
                      ".output_scale", ".output_zero_point", ".k_scale", ".v_scale")
EMBED_RE = re.compile(r"(^|\.)(embed_tokens|embeddings|embed|wte|wpe)$")


class Group:
    """One config group with its weights arguments checked."""

    def __init__(self, name, g, top_format, where):
        w = "%s: config_groups.%s" % (where, name)
        self.name = name
        if not isinstance(g, dict):
            fail(w, "is not an object")
        targets = g.get("targets")
        if (not isinstance(targets, list) or not targets
                or not all(isinstance(t, str) for t in targets)):
            fail(w, "targets must be a non-empty list of strings")
        self.targets = [compile_target(t, w) for t in targets]
        fmt = g.get("format") or top_format
        if fmt is None:
            fail(w, "no format (neither the group nor quantization_config has one)")
        if fmt == "mixed-precision":
            fail(w, "format mixed-precision needs a per-group format")
        if fmt not in KNOWN_FORMATS:
            fail(w, "unknown format %r" % (fmt,))
        if fmt not in SUPPORTED_FORMATS:
            fail(w, "format %r is not supported by this tool" % fmt)
        self.format = fmt
        self.input_acts = g.get("input_activations")
        wa = g.get("weights")
        self.quantizes = wa is not None and fmt != "dense"
        if not self.quantizes:           # dense / no weights: the module stays a plain P.weight
            return
        if not isinstance(wa, dict):
            fail(w, "weights must be an object or null")
        ww = w + ".weights"
        self.bits = wa.get("num_bits", 8)
        self.type = wa.get("type", "int")
        self.symmetric = wa.get("symmetric", True)
        self.strategy = wa.get("strategy")
        self.group_size = wa.get("group_size")
        self.block = wa.get("block_structure")
        if not _is_uint(self.bits) or self.bits == 0:
            fail(ww, "num_bits %r is not a positive integer" % (self.bits,))
        if self.type not in ("int", "float"):
            fail(ww, "unknown type %r" % (self.type,))
        if not isinstance(self.symmetric, bool):
            fail(ww, "symmetric must be true or false")
        if wa.get("actorder") == "group":
            fail(ww, "actorder 'group' (weight_g_idx) is not supported")
        if wa.get("dynamic") not in (None, False):
            fail(ww, "dynamic weight quantization stores no scales; not supported")
        if self.strategy not in ("tensor", "channel", "group", "block"):
            fail(ww, "unknown or unsupported strategy %r" % (self.strategy,))
        if self.strategy == "group":
            if not _is_uint(self.group_size) or self.group_size == 0:
                fail(ww, "strategy group needs a positive group_size, got %r" % (self.group_size,))
        if self.strategy == "block":
            b = self.block
            if isinstance(b, str) and re.match(r"^\d+x\d+$", b):
                b = [int(v) for v in b.split("x")]
            if (not isinstance(b, list) or len(b) != 2
                    or not all(_is_uint(v) and v > 0 for v in b)):
                fail(ww, "strategy block needs block_structure [rows, cols], got %r"
                     % (self.block,))
            self.block = b
        if fmt == "pack-quantized":
            if self.type != "int" or self.bits not in (4, 8):
                fail(ww, "pack-quantized supports int 4 and int 8 only (got %s %d)"
                     % (self.type, self.bits))
            if self.strategy not in ("group", "channel", "tensor"):
                fail(ww, "pack-quantized with strategy %s is not supported" % self.strategy)
            if self.strategy == "tensor" and not self.symmetric:
                fail(ww, "pack-quantized asymmetric with strategy tensor is not supported")
        elif fmt == "int-quantized":
            if self.type != "int" or self.bits > 8:
                fail(ww, "int-quantized needs type int with num_bits <= 8 (got %s %d)"
                     % (self.type, self.bits))
        elif fmt == "float-quantized":
            if self.type != "float" or self.bits != 8:
                fail(ww, "float-quantized supports FP8 (type float, num_bits 8) only (got %s %d)"
                     % (self.type, self.bits))
            if not self.symmetric:
                fail(ww, "float-quantized must be symmetric")


def compile_target(t, where):
    if t == "Linear":
        return ("class", t)
    if t.startswith("re:"):
        try:
            return ("re", re.compile(t[3:]))
        except re.error as e:
            fail(where, "bad regular expression %r: %s" % (t, e))
    if re.match(r"^[A-Z][A-Za-z0-9_]*$", t):
        fail(where, "module class target %r is not supported (only 'Linear')" % t)
    return ("name", t)


def target_matches(tg, name, is_linear):
    kind, v = tg
    if kind == "class":
        return is_linear
    if kind == "re":
        return v.match(name) is not None
    return v == name


class CtConfig:
    def __init__(self, qc, where):
        if not isinstance(qc, dict):
            fail(where, "quantization_config is not an object")
        status = qc.get("quantization_status")
        if status not in (None, "compressed"):
            fail(where, "quantization_status %r: only 'compressed' checkpoints can be read"
                 % (status,))
        for key in ("sparsity_config", "transform_config", "kv_cache_scheme"):
            if qc.get(key):
                fail(where, "%s is not supported" % key)
        top = qc.get("format")
        if top is not None and top not in KNOWN_FORMATS:
            fail(where, "unknown format %r" % (top,))
        groups = qc.get("config_groups")
        if not isinstance(groups, dict) or not groups:
            fail(where, "config_groups must be a non-empty object")
        self.groups = [Group(k, v, top, where) for k, v in groups.items()]
        ign = qc.get("ignore") or []
        if not isinstance(ign, list) or not all(isinstance(t, str) for t in ign):
            fail(where, "ignore must be a list of strings")
        self.ignore = [compile_target(t, where + ": ignore") for t in ign]

    def group_of(self, module, is_linear):
        """The group that quantizes module's weight, or None."""
        for tg in self.ignore:
            if target_matches(tg, module, is_linear):
                return None
        for g in self.groups:
            if any(target_matches(tg, module, is_linear) for tg in g.targets):
                return g if g.quantizes else None
        return None


def is_linear_module(module, weight_ndim):
    """'Linear' = a 2-D weight module other than an embedding or a norm."""
    if weight_ndim != 2:
        return False
    last = module.rsplit(".", 1)[-1]
    return not EMBED_RE.search(module) and "norm" not in last


def candidate_modules(tensors):
    """{module: is_linear} for every module with a 2-D .weight or a .weight_packed."""
    mods = {}
    for name, t in tensors.items():
        if name.endswith(".weight") and len(t.shape) == 2:
            p = name[:-7]
            mods[p] = is_linear_module(p, 2)
        elif name.endswith(".weight_packed"):
            p = name[:-14]
            mods[p] = is_linear_module(p, 2)
    return mods


# --------------------------------------------------------------------------------------------
# Decode
# --------------------------------------------------------------------------------------------

def need(tensors, name, dtypes, module_where, why):
    t = tensors.get(name)
    if t is None:
        fail("%s: %s" % (module_where, name), "missing (%s)" % why)
    if t.dtype not in dtypes:
        fail(t.where(), "dtype %s, expected %s (%s)" % (t.dtype, " or ".join(dtypes), why))
    return t


def scale_shape(strategy, out, inn, gs, block):
    if strategy == "tensor":
        return None                      # [1] or []
    if strategy == "channel":
        return [out, 1]
    if strategy == "group":
        return [out, ceil_div(inn, gs)]
    return [ceil_div(out, block[0]), ceil_div(inn, block[1])]


def check_scale_shape(t, strategy, out, inn, gs, block, what):
    exp = scale_shape(strategy, out, inn, gs, block)
    if exp is None:
        if t.shape not in ([1], []):
            fail(t.where(), "shape %s, expected [1] (or a scalar) for strategy tensor" % t.shape)
    elif t.shape != exp:
        fail(t.where(), "shape %s, expected %s for %s of a [%d, %d] weight"
             % (t.shape, exp, what, out, inn))


def segments(strategy, out, inn, gs, block):
    """Per row r: list of (c0, c1, scale index into the flattened scale tensor)."""
    if strategy == "tensor":
        one = [(0, inn, 0)]
        return lambda r: one
    if strategy == "channel":
        return lambda r: [(0, inn, r)]
    if strategy == "group":
        ng = ceil_div(inn, gs)
        cols = [(g * gs, min(inn, (g + 1) * gs)) for g in range(ng)]
        return lambda r: [(c0, c1, r * ng + g) for g, (c0, c1) in enumerate(cols)]
    br, bc = block
    nb = ceil_div(inn, bc)
    cols = [(g * bc, min(inn, (g + 1) * bc)) for g in range(nb)]
    return lambda r: [(c0, c1, (r // br) * nb + g) for g, (c0, c1) in enumerate(cols)]


def finite_scales(t):
    vals = float_values(t)
    for i, v in enumerate(vals):
        if not math.isfinite(v):
            fail(t.where(), "element %d is %r (scales must be finite)" % (i, v))
    return vals


def overflow_guard(vals, scales, maxcode, where):
    """array('f') turns an overflowing double into inf silently: refuse it instead."""
    if scales and max(map(abs, scales)) * maxcode > FLT_MAX:
        for i, v in enumerate(vals):
            if math.isinf(v):
                fail(where, "dequantized element %d overflows f32" % i)


def dequant_int(codes, out, inn, seg, scales, zps, offset):
    """x = (code - offset - zp) * scale, the integer part first, rounded once to f32."""
    res = array.array("f")
    for r in range(out):
        base = r * inn
        for c0, c1, si in seg(r):
            s = scales[si]
            k = offset + (zps[si] if zps is not None else 0)
            res.fromlist([(u - k) * s for u in codes[base + c0:base + c1]])
    return res


def dequant_fp8(codes, out, inn, seg, scales):
    res = array.array("f")
    e = E4M3
    for r in range(out):
        base = r * inn
        for c0, c1, si in seg(r):
            s = scales[si]
            res.fromlist([e[b] * s for b in codes[base + c0:base + c1]])
    return res


def unpack_weight(t, out, inn, bits):
    """Unsigned codes (bytes, row-major [out, inn]) of a weight_packed tensor; padding must be
    code 0."""
    p = 32 // bits
    wpr = ceil_div(inn, p)
    raw = bytes(t.data)                   # little-endian words: byte order is column order
    if bits == 8:
        full = raw
    else:                                 # 4 bits: byte t holds columns 2t (low), 2t+1 (high)
        full = bytearray(2 * len(raw))
        full[0::2] = raw.translate(_LO_NIBBLE)
        full[1::2] = raw.translate(_HI_NIBBLE)
        full = bytes(full)
    width = wpr * p
    if width == inn:
        return full
    pad = width - inn
    rows = []
    for r in range(out):
        row = full[r * width:(r + 1) * width]
        if row[inn:].count(0) != pad:
            fail(t.where(), "row %d: padding columns %d..%d hold non-zero codes"
                 % (r, inn, width - 1))
        rows.append(row[:inn])
    return b"".join(rows)


_LO_NIBBLE = bytes(b & 15 for b in range(256))
_HI_NIBBLE = bytes(b >> 4 for b in range(256))


def unpack_zero_points(t, out, ng, bits):
    """Signed zero points [out * ng] of a zero point tensor packed along dim 0 (C.4)."""
    p = 32 // bits
    mask = (1 << bits) - 1
    off = 1 << (bits - 1)
    words = [w & 0xFFFFFFFF for w in int_values(t)]
    zp = [0] * (out * ng)
    for w in range(ceil_div(out, p)):
        for g in range(ng):
            word = words[w * ng + g]
            for k in range(p):
                r = w * p + k
                u = (word >> (bits * k)) & mask
                if r < out:
                    zp[r * ng + g] = u - off
                elif u != 0:
                    fail(t.where(), "word [%d, %d]: padding row %d holds a non-zero code"
                         % (w, g, r))
    return zp


def decode_ct_module(P, g, tensors, used, src):
    """F32 values of module P quantized by group g; marks the tensors it reads as used."""
    mw = src
    why = "module %s is quantized by group %s, format %s" % (P, g.name, g.format)
    for extra in (".weight_g_idx",):
        if P + extra in tensors:
            fail(tensors[P + extra].where(), "g_idx is not supported")
    for inp in (".input_scale", ".input_zero_point"):
        if P + inp in tensors:
            if g.input_acts is None:
                fail(tensors[P + inp].where(), "input activations are not quantized by group %s"
                     % g.name)
            used.add(P + inp)
    plain = tensors.get(P + ".weight")
    if g.format == "pack-quantized":
        if plain is not None:
            if P + ".weight_packed" not in tensors:
                fail(plain.where(), "stored as a plain %s weight but %s, so %s.weight_packed is "
                     "expected" % (plain.dtype, why, P))
            fail(plain.where(), "present next to %s.weight_packed (%s)" % (P, why))
        tp = need(tensors, P + ".weight_packed", ("I32",), mw, why)
        ts = need(tensors, P + ".weight_shape", ("I32", "I64"), mw, why)
        if ts.shape != [2]:
            fail(ts.where(), "shape %s, expected [2]" % ts.shape)
        out, inn = int_values(ts)
        if out <= 0 or inn <= 0:
            fail(ts.where(), "weight_shape [%d, %d] is not positive" % (out, inn))
        p = 32 // g.bits
        if tp.shape != [out, ceil_div(inn, p)]:
            fail(tp.where(), "shape %s disagrees with weight_shape [%d, %d] (expected [%d, %d])"
                 % (tp.shape, out, inn, out, ceil_div(inn, p)))
        codes = unpack_weight(tp, out, inn, g.bits)
        offset = 1 << (g.bits - 1)
        used.update((P + ".weight_packed", P + ".weight_shape"))
    elif g.format == "int-quantized":
        tp = need(tensors, P + ".weight", ("I8",), mw, why)
        if len(tp.shape) != 2:
            fail(tp.where(), "shape %s is not 2-D" % tp.shape)
        out, inn = tp.shape
        codes = int_values(tp)
        lo, hi = -(1 << (g.bits - 1)), (1 << (g.bits - 1)) - 1
        if codes and (min(codes) < lo or max(codes) > hi):
            fail(tp.where(), "codes outside [%d, %d] for num_bits %d" % (lo, hi, g.bits))
        offset = 0
        used.add(P + ".weight")
    else:                                  # float-quantized
        tp = need(tensors, P + ".weight", ("F8_E4M3",), mw, why)
        if len(tp.shape) != 2:
            fail(tp.where(), "shape %s is not 2-D" % tp.shape)
        out, inn = tp.shape
        codes = bytes(tp.data)
        used.add(P + ".weight")
    tsc = need(tensors, P + ".weight_scale", FLOAT_DTYPES, mw, why)
    check_scale_shape(tsc, g.strategy, out, inn, g.group_size, g.block, "weight_scale")
    scales = finite_scales(tsc)
    used.add(P + ".weight_scale")
    seg = segments(g.strategy, out, inn, g.group_size, g.block)
    zname = P + ".weight_zero_point"
    if g.format == "float-quantized":
        if zname in tensors:
            fail(tensors[zname].where(), "float-quantized weights have no zero point")
        vals = dequant_fp8(codes, out, inn, seg, scales)
        overflow_guard(vals, scales, 448.0, tp.where())
        return out, inn, vals
    zps = None
    lo, hi = -(1 << (g.bits - 1)), (1 << (g.bits - 1)) - 1
    if zname in tensors or not g.symmetric:
        if g.format == "pack-quantized":
            tz = need(tensors, zname, ("I32",), mw, why + ", asymmetric")
            ng = 1 if g.strategy in ("channel", "tensor") else ceil_div(inn, g.group_size)
            exp = [ceil_div(out, 32 // g.bits), ng]
            if tz.shape != exp:
                fail(tz.where(), "shape %s, expected %s (zero points packed along dim 0 of a "
                     "[%d, %d] weight)" % (tz.shape, exp, out, inn))
            zps = unpack_zero_points(tz, out, ng, g.bits)
        else:
            tz = need(tensors, zname, ("I8", "I32", "I64"), mw, why + ", asymmetric")
            if tz.shape != tsc.shape:
                fail(tz.where(), "shape %s differs from weight_scale's %s" % (tz.shape, tsc.shape))
            zps = int_values(tz)
            if zps and (min(zps) < lo or max(zps) > hi):
                fail(tz.where(), "zero points outside [%d, %d]" % (lo, hi))
        if g.symmetric and any(zps):
            fail(tz.where(), "non-zero zero point for a symmetric scheme")
        used.add(zname)
    vals = dequant_int(codes, out, inn, seg, scales, zps, offset)
    overflow_guard(vals, scales, float(2 * (hi - lo + 1)), tp.where())
    return out, inn, vals


def decode(src, out):
    cfg_path = os.path.join(src, "config.json")
    cfg = load_json(cfg_path)
    if not isinstance(cfg, dict):
        fail(cfg_path, "is not a JSON object")
    tensors = load_model(src)
    qc = cfg.get("quantization_config")
    results = {}                 # output name -> (shape, producer)
    used = set()
    if qc is None:
        pass
    elif not isinstance(qc, dict):
        fail(cfg_path, "quantization_config is not an object")
    elif qc.get("quant_method") == "fp8":
        decode_native_fp8(qc, tensors, used, results, cfg_path)
    elif qc.get("quant_method") == "compressed-tensors":
        ct = CtConfig(qc, cfg_path)
        mods = candidate_modules(tensors)
        for P in sorted(mods):
            g = ct.group_of(P, mods[P])
            if g is None:
                continue
            o, i, vals = decode_ct_module(P, g, tensors, used, src)
            results[P + ".weight"] = ([o, i], vals.tobytes if LITTLE else _swapped(vals))
    else:
        fail(cfg_path, "unknown quant_method %r" % (qc.get("quant_method"),))
    for name, t in tensors.items():
        if name in used:
            continue
        if any(name.endswith(s) for s in COMPANION_SUFFIXES):
            fail(t.where(), "companion tensor of a module the quantization_config does not "
                 "quantize (or an unexpected one)")
        if t.dtype not in FLOAT_DTYPES:
            fail(t.where(), "dtype %s but the tensor is not part of a quantized module"
                 % t.dtype)
        if name in results:
            fail(t.where(), "name clashes with a dequantized module weight")
        results[name] = (t.shape, (lambda t=t: widen_to_f32_bytes(t)))
    od = OutDir(src, out)
    try:
        entries = [(n, "F32", results[n][0], results[n][1]) for n in sorted(results)]
        write_safetensors(od.path("model.safetensors"), entries)
        c2 = dict(cfg)
        c2.pop("quantization_config", None)
        write_json(od.path("config.json"), c2)
        copy_side_files(src, od)
        od.commit()
    except BaseException:
        od.abort()
        raise
    return len(entries)


def _swapped(vals):
    def f():
        a = array.array("f", vals)
        a.byteswap()
        return a.tobytes()
    return f


def decode_native_fp8(qc, tensors, used, results, cfg_path):
    fmt = qc.get("fmt", "e4m3")
    if fmt != "e4m3":
        fail(cfg_path, "quantization_config.fmt %r is not supported (only e4m3)" % (fmt,))
    bs = qc.get("weight_block_size", [128, 128])
    if not isinstance(bs, list) or len(bs) != 2 or not all(_is_uint(v) and v > 0 for v in bs):
        fail(cfg_path, "weight_block_size %r is not [rows, cols]" % (bs,))
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype != "F8_E4M3":
            continue
        if not name.endswith(".weight") or len(t.shape) != 2:
            fail(t.where(), "F8_E4M3 tensor that is not a 2-D .weight")
        out, inn = t.shape
        sname = name + "_scale_inv"
        ts = need(tensors, sname, ("F32",), t.file, "companion of the F8_E4M3 weight %s" % name)
        exp = [ceil_div(out, bs[0]), ceil_div(inn, bs[1])]
        if ts.shape != exp:
            fail(ts.where(), "shape %s, expected %s for a [%d, %d] weight"
                 % (ts.shape, exp, out, inn))
        scales = finite_scales(ts)
        seg = segments("block", out, inn, None, bs)
        vals = dequant_fp8(bytes(t.data), out, inn, seg, scales)
        overflow_guard(vals, scales, 448.0, t.where())
        results[name] = ([out, inn], vals.tobytes if LITTLE else _swapped(vals))
        used.update((name, sname))


# --------------------------------------------------------------------------------------------
# Encode
# --------------------------------------------------------------------------------------------

def _weights(bits, typ, sym, strategy, group_size=None, block=None):
    return {"num_bits": bits, "type": typ, "symmetric": sym, "strategy": strategy,
            "group_size": group_size, "block_structure": block, "dynamic": False,
            "actorder": None, "observer": "minmax", "observer_kwargs": {}}


def _group(targets, weights, fmt=None):
    g = {"targets": targets, "weights": weights, "input_activations": None,
         "output_activations": None}
    if fmt is not None:
        g["format"] = fmt
    return g


W4_SYM32 = _weights(4, "int", True, "group", 32)
FP8_BLOCK = _weights(8, "float", True, "block", block=[128, 128])

ROUTED_RE = re.compile(r"^model\.layers\.\d+\.mlp\.experts\.\d+\.(gate|up|down)_proj$")
GENERAL_IGNORE = ["lm_head", "re:.*mlp\\.gate$", "re:.*indexer\\.weights_proj$"]
MIXED_FP8_TARGETS = [
    "re:.*self_attn\\.(q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)$",
    "re:.*self_attn\\.indexer\\.(wq_b|wk)$",
    "re:.*mlp\\.shared_experts\\.(gate|up|down)_proj$",
    "re:.*mlp\\.(gate|up|down)_proj$",
]

SCHEMES = {
    "kimi-int4": ("pack-quantized", {"group_0": _group(["Linear"], W4_SYM32)},
                  ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
                   "re:.*mlp\\.(gate|up|gate_up|down)_proj.*", "re:.*mlp\\.gate$"]),
    "w4a16-asym": ("pack-quantized",
                   {"group_0": _group(["Linear"], _weights(4, "int", False, "group", 128))},
                   GENERAL_IGNORE),
    "w8a16": ("pack-quantized",
              {"group_0": _group(["Linear"], _weights(8, "int", True, "channel"))},
              GENERAL_IGNORE),
    "int8-int": ("int-quantized",
                 {"group_0": _group(["Linear"], _weights(8, "int", True, "channel"))},
                 GENERAL_IGNORE),
    "fp8-block": ("float-quantized", {"group_0": _group(["Linear"], FP8_BLOCK)}, GENERAL_IGNORE),
    "fp8-channel": ("float-quantized",
                    {"group_0": _group(["Linear"], _weights(8, "float", True, "channel"))},
                    GENERAL_IGNORE),
    "fp8-tensor": ("float-quantized",
                   {"group_0": _group(["Linear"], _weights(8, "float", True, "tensor"))},
                   GENERAL_IGNORE),
    "mixed": ("mixed-precision",
              {"group_0": _group(["re:.*mlp\\.experts\\.\\d+\\.(gate|up|down)_proj$"], W4_SYM32,
                                 "pack-quantized"),
               "group_1": _group(MIXED_FP8_TARGETS, FP8_BLOCK, "float-quantized")},
              ["lm_head"]),
}


def intended(scheme, P):
    """The module set each scheme is meant to quantize (checked against what C.1 matching of the
    written config selects, so the config and the tensors cannot drift apart)."""
    if scheme == "kimi-int4":
        return bool(ROUTED_RE.match(P))
    last = P.rsplit(".", 1)[-1]
    if scheme == "mixed":
        if ROUTED_RE.match(P):
            return "group_0"
        if (re.search(r"\.self_attn\.(q_a_proj|q_b_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)$", P)
                or re.search(r"\.self_attn\.indexer\.(wq_b|wk)$", P)
                or re.search(r"\.mlp\.shared_experts\.(gate|up|down)_proj$", P)
                or re.search(r"^model\.layers\.\d+\.mlp\.(gate|up|down)_proj$", P)):
            return "group_1"
        return False
    return not (P == "lm_head" or EMBED_RE.search(P) or re.search(r"\.mlp\.gate$", P)
                or re.search(r"\.indexer\.weights_proj$", P) or P.endswith("shared_head.head")
                or "norm" in last)


def build_qconfig(scheme, modules):
    fmt, groups, ignore = SCHEMES[scheme]
    ignore = list(ignore)
    # MTP extras (absent from tiny-v32-bf16): keep eh_proj / shared_head.head out of schemes
    # that should not touch them.
    if any(m.endswith(".shared_head.head") for m in modules) and scheme != "mixed":
        ignore.append("re:.*shared_head\\.head$")
    if scheme == "kimi-int4" and any(m.endswith(".eh_proj") for m in modules):
        ignore.append("re:.*eh_proj$")
    return {"config_groups": json.loads(json.dumps(groups)), "format": fmt,
            "global_compression_ratio": None, "ignore": ignore, "kv_cache_scheme": None,
            "quant_method": "compressed-tensors", "quantization_status": "compressed",
            "sparsity_config": None, "transform_config": None, "version": "0.12.2+ct_ref"}


def quant_int(x, out, inn, g, where):
    """(codes q row-major, bf16 scale values, bf16 bits, zero points) per C.3."""
    bits = g.bits
    qmin, qmax = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    gs = g.group_size if g.strategy == "group" else inn
    ng = ceil_div(inn, gs)
    codes = []
    svals, sbits, zps = [], [], []
    half_range = (qmax - qmin) / 2
    for r in range(out):
        base = r * inn
        for gi in range(ng):
            seg = x[base + gi * gs:base + min(inn, (gi + 1) * gs)]
            mx, mn = max(seg), min(seg)
            z = 0
            if g.symmetric:
                amax = max(mx, -mn)
                if amax == 0:
                    s, sb = 1.0, 0x3F80
                else:
                    s, sb = round_bf16(amax / half_range, where)
            else:
                mn, mx = min(mn, 0.0), max(mx, 0.0)
                if mn == mx:
                    s, sb = 1.0, 0x3F80
                else:
                    s, sb = round_bf16((mx - mn) / (qmax - qmin), where)
            if s == 0:
                fail(where, "row %d group %d: scale underflows to zero in bf16" % (r, gi))
            if not g.symmetric and not (mn == mx):
                z = round(qmin - mn / s)
                z = qmin if z < qmin else (qmax if z > qmax else z)
            codes.extend([qmin if q < qmin else (qmax if q > qmax else q)
                          for q in [round(v / s) + z for v in seg]])
            svals.append(s)
            sbits.append(sb)
            zps.append(z)
    return codes, svals, sbits, zps


def fp8_units(g, out, inn):
    if g.strategy == "tensor":
        return [(0, out, 0, inn)], [1]
    if g.strategy == "channel":
        return [(r, r + 1, 0, inn) for r in range(out)], [out, 1]
    br, bc = g.block
    nr, nc = ceil_div(out, br), ceil_div(inn, bc)
    return ([(i * br, min(out, (i + 1) * br), j * bc, min(inn, (j + 1) * bc))
             for i in range(nr) for j in range(nc)], [nr, nc])


def quant_fp8(x, out, inn, g, where):
    units, sshape = fp8_units(g, out, inn)
    scales = []
    codes = bytearray(out * inn)
    for (r0, r1, c0, c1) in units:
        amax = 0.0
        for r in range(r0, r1):
            seg = x[r * inn + c0:r * inn + c1]
            amax = max(amax, max(seg), -min(seg))
        s = 1.0 if amax == 0 else round_f32(amax / 448.0, where)
        if s == 0:
            fail(where, "block rows %d.. cols %d..: scale underflows to zero in f32" % (r0, c0))
        scales.append(s)
        for r in range(r0, r1):
            b = r * inn
            codes[b + c0:b + c1] = bytes([fp8_code(v / s) for v in x[b + c0:b + c1]])
    return bytes(codes), scales, sshape


def pack_codes(codes, out, inn, bits):
    """weight_packed bytes (I32 [out, ceil(inn / p)]) of signed codes, LSB first, pad u = 0."""
    p = 32 // bits
    off = 1 << (bits - 1)
    width = ceil_div(inn, p) * p
    u = bytes([q + off for q in codes])
    if width != inn:
        pad = bytes(width - inn)
        u = b"".join(u[r * inn:(r + 1) * inn] + pad for r in range(out))
    if bits == 8:
        return u
    lo = u[0::2]
    hi = u[1::2].translate(_SHL4)
    n = len(lo)
    return (int.from_bytes(lo, "little") | int.from_bytes(hi, "little")).to_bytes(n, "little")


_SHL4 = bytes((b << 4) & 0xFF for b in range(256))


def pack_zero_points(zps, out, ng, bits):
    p = 32 // bits
    off = 1 << (bits - 1)
    words = []
    for w in range(ceil_div(out, p)):
        for gi in range(ng):
            word = 0
            for k in range(p):
                r = w * p + k
                if r < out:
                    word |= (zps[r * ng + gi] + off) << (bits * k)
            words.append(word)
    return struct.pack("<%dI" % len(words), *words)


def encode_module(P, t, g, where):
    """[(name, dtype, shape, bytes)] of the compressed-tensors tensors of module P."""
    out, inn = t.shape
    x = float_values(t)
    if not all(map(math.isfinite, x)):
        i = next(i for i, v in enumerate(x) if not math.isfinite(v))
        fail(t.where(), "element %d is %r; cannot quantize a non-finite weight" % (i, x[i]))
    if g.format == "float-quantized":
        codes, scales, sshape = quant_fp8(x, out, inn, g, t.where())
        return [(P + ".weight", "F8_E4M3", [out, inn], codes),
                (P + ".weight_scale", "F32", sshape, struct.pack("<%df" % len(scales), *scales))]
    codes, svals, sbits, zps = quant_int(x, out, inn, g, t.where())
    ng = ceil_div(inn, g.group_size) if g.strategy == "group" else 1
    res = []
    if g.format == "pack-quantized":
        res.append((P + ".weight_packed", "I32", [out, ceil_div(inn, 32 // g.bits)],
                    pack_codes(codes, out, inn, g.bits)))
    else:
        res.append((P + ".weight", "I8", [out, inn], array.array("b", codes).tobytes()))
    res.append((P + ".weight_scale", "BF16", [out, ng], struct.pack("<%dH" % len(sbits), *sbits)))
    if g.format == "pack-quantized":
        res.append((P + ".weight_shape", "I64", [2], struct.pack("<qq", out, inn)))
    if not g.symmetric:
        res.append((P + ".weight_zero_point", "I32", [ceil_div(out, 32 // g.bits), ng],
                    pack_zero_points(zps, out, ng, g.bits)))
    return res


def encode(src, out, scheme):
    cfg_path = os.path.join(src, "config.json")
    cfg = load_json(cfg_path)
    if not isinstance(cfg, dict):
        fail(cfg_path, "is not a JSON object")
    if "quantization_config" in cfg:
        fail(cfg_path, "source already has a quantization_config; encode needs a BF16/F32 model")
    tensors = load_model(src)
    for name, t in tensors.items():
        if t.dtype not in FLOAT_DTYPES:
            fail(t.where(), "dtype %s: encode needs a BF16/F16/F32 source" % t.dtype)
        if any(name.endswith(s) for s in COMPANION_SUFFIXES):
            fail(t.where(), "the source already holds a quantization companion tensor")
    mods = candidate_modules(tensors)
    qc = build_qconfig(scheme, mods)
    ct = CtConfig(qc, "%s (scheme %s)" % (cfg_path, scheme))
    plan = {}
    for P in sorted(mods):
        g = ct.group_of(P, mods[P])
        want = intended(scheme, P)
        got = g.name if (g is not None and scheme == "mixed") else (g is not None)
        if got != want:
            raise AssertionError("scheme %s: module %s matched %r but should be %r"
                                 % (scheme, P, got, want))
        if g is not None:
            plan[P + ".weight"] = (P, g)
    if not plan:
        fail(src, "scheme %s selects no module in this checkpoint" % scheme)
    entries = []
    for name in sorted(tensors):
        t = tensors[name]
        if name in plan:
            P, g = plan[name]
            entries.extend(encode_module(P, t, g, cfg_path))
        else:
            entries.append((name, t.dtype, t.shape, bytes(t.data)))
    entries.sort(key=lambda e: e[0])
    names = [e[0] for e in entries]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        fail(src, "tensor name %s would be written twice" % dup)
    # Two shards split near half the bytes, right after a quantized module's main tensor so that
    # its scale lands in the other shard.
    total = sum(len(e[3]) for e in entries)
    acc, split = 0, None
    for i, e in enumerate(entries):
        acc += len(e[3])
        if acc >= total // 2 and i + 1 < len(entries):
            if split is None:
                split = i + 1
            if ((e[0].endswith(".weight_packed") or e[0] + "_scale" in names)
                    and e[0].rsplit(".", 1)[0] + ".weight_scale" == entries[i + 1][0]):
                split = i + 1
                break
    if split is None:
        split = max(1, len(entries) - 1) if len(entries) > 1 else 1
    shards = [entries[:split], entries[split:]] if len(entries) > 1 else [entries]
    od = OutDir(src, out)
    try:
        wm = {}
        n = len(shards)
        for k, sh in enumerate(shards):
            fname = "model-%05d-of-%05d.safetensors" % (k + 1, n)
            write_safetensors(od.path(fname),
                              [(nm, dt, shp, (lambda b=b: b)) for nm, dt, shp, b in sh])
            for e in sh:
                wm[e[0]] = fname
        write_json(od.path("model.safetensors.index.json"),
                   {"metadata": {"total_size": total}, "weight_map": dict(sorted(wm.items()))})
        c2 = dict(cfg)
        c2["quantization_config"] = qc
        write_json(od.path("config.json"), c2)
        copy_side_files(src, od)
        od.commit()
    except BaseException:
        od.abort()
        raise
    return len(plan), len(entries)


# --------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(prog="ct_ref.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("decode", help="dequantize any supported checkpoint to F32")
    d.add_argument("src")
    d.add_argument("out")
    e = sub.add_parser("encode", help="write a compressed-tensors checkpoint from BF16/F32")
    e.add_argument("src")
    e.add_argument("out")
    e.add_argument("--scheme", required=True, choices=sorted(SCHEMES))
    a = ap.parse_args(argv)
    try:
        if not os.path.isdir(a.src):
            fail(a.src, "not a folder")
        if a.cmd == "decode":
            n = decode(a.src, a.out)
            print("%s: wrote %d F32 tensors to %s" % (PROG, n, a.out))
        else:
            nq, n = encode(a.src, a.out, a.scheme)
            print("%s: %s: quantized %d modules, wrote %d tensors to %s"
                  % (PROG, a.scheme, nq, n, a.out))
    except Fail as ex:
        sys.stderr.write("%s: error: %s\n" % (PROG, ex))
        return 1
    except OSError as ex:
        sys.stderr.write("%s: error: %s: %s\n" % (PROG, ex.filename or "", ex.strerror or ex))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
