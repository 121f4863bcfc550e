"""FAST 1.1 decoder stage, generated from the template XML at elaboration time.

The same :class:`~protocols.fast.templates.TemplateSet` that drives the Python
codec is compiled here (:func:`compile_templates`) into a short program of
*blocks*; the gateware runs one block per cycle.

Architecture (two stages and an output queue):

* **Splitter.** Each 8-byte beat of a UDP payload is split at its stop bits in
  parallel (bit 7 of every byte): every byte that ends an entity (an integer,
  an ASCII string or a presence map) closes one entity, whose 7-bit groups
  (with a partial entity carried over from the previous beat) are written
  right-aligned, 10 groups at most, into an entity queue; up to 8 entities
  and an end-of-datagram marker enter the queue per beat. The queue shifts
  out as many entities as the engine used and takes the new ones behind them.
* **Engine.** A template is a fixed sequence of blocks: the fields of the
  message segment packed into blocks of at most :data:`VIEW` entities (worst
  case), one block per sequence element (the element's presence map and every
  field of the element), and the fields after the sequence. In one cycle a
  block tests its presence-map bits (static positions), finds each field's
  entity by a running index over the queue's first :data:`VIEW` entries,
  applies the operator against its dictionary entry (registers:
  incremental-refresh templates have few) and consumes the entities it used.
  A message's presence map and template identifier are decoded in the same
  cycle as its template's first block; a sequence element, i.e. one
  price-level entry, takes one cycle whatever its fields' presence; the
  datagram's end marker is taken in the cycle of its last message.
* **Updates.** Each element of the level template (``protocols.fast.levels``)
  writes one update into a transactional queue; a message's updates become
  visible when the message ends and are discarded if it fails, so exactly
  the updates of messages the reference codec decodes leave, in order. A
  final register stage converts the decimal price to price4.

Throughput (``tests/hw/test_fast_verilator.py``, saturated input): about 6.8
bytes, 4.5 fields and 0.79 updates per cycle on the generated quote feed
(one entry per cycle is the bound). Latency from a message's last byte to its
last update: 4 cycles for a one-entry message, plus one per further entry
(a message's updates leave back to back once it is complete).

Timing: the engine evaluates a whole block (presence bits, entity indices,
operators, the queue shift) in one cycle, which is a long combinational path:
about 26 MHz after placement on the LFE5UM5G-85F (``hw/synth_fast.py``), so
pipelining the engine is the next step before it meets a 10 Gb/s feed.

Limits: ASCII strings and integers of at most 10 bytes (longer ones count
under ``bad_field``); the reportable errors of the specification (overlong
encodings, range checks, unused presence-map bits) are not checked.

Bad input never hangs the stage: a field needing bytes past the end of the
datagram, an unknown template identifier, a sequence longer than
``max_sequence`` or an over-long field drops the datagram from that message to
its end and counts the reason; dictionaries are reset at every datagram. A
message of a *host* template (security definitions, which use string delta
and unicode tail) stops the gateware's decoding of its datagram: the host
decodes such datagrams with the Python codec.
"""

from dataclasses import dataclass, field as dc_field

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from hw.csr import block_signature
from hw.stream import Beat
from protocols.fast import Field, Group, ScaledNumber, Sequence, TemplateRef, TemplateSet
from protocols.fast import levels as lv
from protocols.fast.templates import INTEGER_TYPES
from protocols.registers_fast import FAST

GROUPS = 10
"""Entity payload: ten 7-bit groups hold any 64-bit integer, delta or nullable value."""
VIEW = 9
"""Entities the engine sees (and may consume) per cycle: a price-level entry's presence map and its
eight fields at most."""
QUEUE = 20
"""Entity queue slots; a beat is taken while at most QUEUE - 9 are in use."""
LONG = GROUPS + 1

Entity = data.StructLayout({"value": 7 * GROUPS, "len": 4, "end": 1, "partial": 1})
"""An entity's 7-bit groups right-aligned (``len`` groups, 11 = longer than 10) or an end-of-datagram
marker (``end``; ``partial`` when the datagram ended inside an entity or was aborted)."""

UpdateRecord = data.StructLayout({name: width for name, width in lv.UPDATE_LAYOUT})
"""A price-level update (``protocols.fast.levels.UPDATE_LAYOUT``)."""


class FastBuildError(ValueError):
    """A template the gateware decoder cannot be generated for; names the template and the construct."""


# --------------------------------------------------------------------------- #
# Compilation: templates -> blocks
# --------------------------------------------------------------------------- #

_OPS = {"int": {None, "constant", "default", "copy", "increment", "delta"},
        "decimal": {None, "constant", "default", "copy", "delta"},
        "ascii": {None, "constant", "default", "copy"}}


def _scope(dictionary: str, template: str, app_type: str):
    if dictionary == "global":
        return "global"
    if dictionary == "template":
        return ("template", template)
    if dictionary == "type":
        return ("type", app_type)
    return ("user", dictionary)


@dataclass
class Op:
    """One primitive field as the engine runs it."""

    name: str
    kind: str            # "int", "decimal", "ascii"
    ftype: str           # the FAST type (uInt32 ... ascii, decimal)
    optional: bool
    op: str | None
    value: object
    key: tuple | None
    bit: int | None      # presence map bit index in its segment
    segment: str         # "msg" or "elem"
    gate: str | None = None     # an individual mantissa: consumed only if this exponent op is not NULL
    path: str = ""

    @property
    def worst(self) -> int:
        return 2 if self.kind == "decimal" and self.op != "constant" else (0 if self.op == "constant" else 1)


@dataclass
class Block:
    ops: list
    segment: str
    pmap: bool = False          # reads the segment's presence map at entity 0
    length: Op | None = None    # ends with the sequence length


@dataclass
class CompiledTemplate:
    name: str
    id: int
    host: bool
    before: list = dc_field(default_factory=list)    # blocks before the sequence (the last has the length)
    element: list = dc_field(default_factory=list)   # blocks of one sequence element
    after: list = dc_field(default_factory=list)
    msg_bits: int = 1
    elem_bits: int = 0


def _check_field(t: str, f: Field) -> str:
    if f.kind in INTEGER_TYPES:
        kind = "int"
    elif f.kind in ("decimal", "ascii"):
        kind = f.kind
    else:
        raise FastBuildError(f"template {t}: field {f.name} is a {f.kind} field; the gateware decoder takes "
                             f"integers, ASCII strings and decimals ({f.path})")
    op = None if f.op is None else f.op.kind
    if op not in _OPS[kind]:
        raise FastBuildError(f"template {t}: field {f.name}: the {op} operator on a {f.kind} field is not "
                             f"supported by the gateware decoder ({f.path})")
    if kind == "ascii" and f.op is not None and f.op.value is not None and len(f.op.value) > GROUPS:
        raise FastBuildError(f"template {t}: field {f.name}: ASCII initial value longer than {GROUPS} characters")
    return kind


def _ops_of(ts: TemplateSet, tname: str, f: Field, ctx, segment: str, bits: list) -> list[Op]:
    def mk(g: Field, kind, gate=None):
        bit = None
        if g.pmap_bit:
            bit = bits[0]
            bits[0] += 1
        key = None if g.op is None else (_scope(g.op.dictionary, *ctx), g.op.key)
        return Op(g.name, kind, g.kind, g.optional, None if g.op is None else g.op.kind,
                  None if g.op is None else g.op.value, key, bit, segment, gate, g.path)
    kind = _check_field(tname, f)
    if f.individual:
        for part in (f.exponent, f.mantissa):
            _check_field(tname, part)
        e = mk(f.exponent, "int")
        mant = mk(f.mantissa, "int", gate=e.name)
        return [e, mant]
    return [mk(f, kind)]


def _flatten(ts: TemplateSet, tname: str, instrs, ctx, out: list, depth: int):
    for ins in instrs:
        if isinstance(ins, Field):
            out.append(("field", ins, ctx))
        elif isinstance(ins, TemplateRef):
            if ins.name is None:
                raise FastBuildError(f"template {tname}: a dynamic template reference is not supported by the "
                                     f"gateware decoder ({ins.path})")
            r = ts.templates[ins.name]
            _flatten(ts, tname, r.instructions, (r.name, r.type_ref or ctx[1]), out, depth)
        elif isinstance(ins, Sequence):
            if depth:
                raise FastBuildError(f"template {tname}: nested sequence {ins.name}; the gateware decoder "
                                     f"takes one level of sequence ({ins.path})")
            out.append(("sequence", ins, ctx))
        elif isinstance(ins, Group):
            raise FastBuildError(f"template {tname}: group {ins.name} is not supported by the gateware decoder "
                                 f"({ins.path})")
        else:
            raise FastBuildError(f"template {tname}: unknown instruction {ins!r}")


def _pack(ops: list[Op], segment: str, first_pmap: bool, view: int) -> list[Block]:
    blocks, cur, used, keys = [], [], 1 if first_pmap else 0, set()
    pm = first_pmap
    for op in ops:
        if cur and (used + op.worst > view or (op.key is not None and op.key in keys)):
            blocks.append(Block(cur, segment, pm))
            cur, used, keys, pm = [], 0, set(), False
        cur.append(op)
        used += op.worst
        if op.key is not None:
            keys.add(op.key)
    if cur or pm:
        blocks.append(Block(cur, segment, pm))
    return blocks


def compile_templates(ts: TemplateSet, host: tuple = (), view: int = VIEW) -> list[CompiledTemplate]:
    """Compile every template with an identifier; ``host`` names templates left to the host.
    Raises :class:`FastBuildError` naming the template and construct the gateware cannot decode."""
    out = []
    host_names = {ts[h].name for h in host}
    for t in ts:
        if t.id is None:
            continue
        ct = CompiledTemplate(t.name, t.id, t.name in host_names)
        out.append(ct)
        if ct.host:
            continue
        items: list = []
        _flatten(ts, t.local_name, t.instructions, (t.name, t.type_ref or "any"), items, 0)
        seqs = [i for i, (k, _, _) in enumerate(items) if k == "sequence"]
        if len(seqs) > 1:
            raise FastBuildError(f"template {t.local_name}: {len(seqs)} sequences; the gateware decoder takes one")
        bits = [1]             # bit 0 of a message's presence map is the template identifier's
        before, after, length, elem_ops = [], [], None, []
        for i, (k, ins, ctx) in enumerate(items):
            if k == "field":
                (before if not seqs or i < seqs[0] else after).extend(_ops_of(ts, t.local_name, ins, ctx, "msg", bits))
            else:
                if ins.length.op is not None and ins.length.op.kind not in _OPS["int"]:
                    raise FastBuildError(f"template {t.local_name}: sequence length operator {ins.length.op.kind}")
                length = _ops_of(ts, t.local_name, ins.length, ctx, "msg", bits)[0]
                ebits = [0]
                sub: list = []
                _flatten(ts, t.local_name, ins.instructions, (ctx[0], ins.type_ref or ctx[1]), sub, 1)
                for _, f, c in sub:
                    elem_ops.extend(_ops_of(ts, t.local_name, f, c, "elem", ebits))
                if not ins.has_pmap:
                    raise FastBuildError(f"template {t.local_name}: sequence {ins.name} without its own presence "
                                         f"map is not supported by the gateware decoder")
                ct.elem_bits = ebits[0]
        ct.msg_bits = bits[0]
        ct.before = _pack(before + ([length] if length else []), "msg", False, view)
        if length:
            last = ct.before[-1]
            last.length = length
            last.ops = [o for o in last.ops if o is not length]
            ct.element = _pack(elem_ops, "elem", True, view)
        ct.after = _pack(after, "msg", False, view)
        if max(ct.msg_bits, ct.elem_bits) > 21:
            raise FastBuildError(f"template {t.local_name}: a presence map of more than 21 bits")
    return out


# --------------------------------------------------------------------------- #
# Gateware
# --------------------------------------------------------------------------- #

def _ascii_const(s: str) -> tuple[int, int]:
    v = 0
    for ch in s:
        v = (v << 7) | ord(ch)
    return v, len(s)


def _wrap(v: int, bits: int) -> int:
    return v & ((1 << bits) - 1)


class _Dict:
    """A dictionary entry in registers: state (0 undefined, 1 empty, 2 assigned) and value."""

    def __init__(self, kind: str, name: str):
        self.kind = kind
        self.state = Signal(2, name=f"d_{name}_state")
        self.value = Signal(signed(64) if kind == "int" else 64, name=f"d_{name}_v")
        self.exp = Signal(signed(8), name=f"d_{name}_e") if kind == "decimal" else None
        self.chars = Signal(7 * GROUPS, name=f"d_{name}_c") if kind == "ascii" else None
        self.len = Signal(4, name=f"d_{name}_l") if kind == "ascii" else None


class FastDecoder(wiring.Component):
    """The FAST decoder (see the module doc).

    Attributes
    ----------
    i : stream of Beat
        One UDP payload (one or more FAST messages) per packet.
    o : stream of UpdateRecord
        Price-level updates.
    csr : registers of the ``fast`` block (``protocols/registers_fast.py``)
    """

    def __init__(self, templates: TemplateSet, *, host: tuple = ("SecurityDefinition",), max_sequence: int = 32,
                 queue_depth: int = 64):
        self.templates = templates
        self.program = compile_templates(templates, host)
        self.max_sequence = max_sequence
        self.queue_depth = queue_depth
        if queue_depth <= max_sequence or queue_depth & (queue_depth - 1):
            raise ValueError("queue_depth must be a power of two above max_sequence")
        super().__init__({
            "i": In(stream.Signature(Beat)),
            "o": Out(stream.Signature(UpdateRecord)),
            "csr": In(block_signature(FAST)),
        })

    # -- splitter ---------------------------------------------------------- #

    def _splitter(self, m, view, count, consume):
        beat = self.i.payload
        slots = [Signal(Entity, name=f"slot{k}") for k in range(QUEUE)]
        m.d.comb += [view[k].eq(slots[k]) for k in range(VIEW)]
        accept = Signal()
        m.d.comb += [self.i.ready.eq(count <= QUEUE - 9), accept.eq(self.i.valid & self.i.ready)]
        carry = Signal(7 * GROUPS)
        clen = Signal(range(LONG + 1))
        lane_ok = [beat.n > k for k in range(8)]
        groups = [beat.data[8 * k:8 * k + 7] for k in range(8)]
        stop = [Signal(name=f"stop{k}") for k in range(8)]
        m.d.comb += [stop[k].eq(lane_ok[k] & beat.data[8 * k + 7]) for k in range(8)]
        # G: carry groups (oldest first, index 0..9) then the lanes
        carry_g = [carry[7 * (GROUPS - 1 - j):7 * (GROUPS - j)] for j in range(GROUPS)]
        G = carry_g + groups
        ents = []
        for i in range(8):
            ln = Signal(range(LONG + 9), name=f"len{i}")
            m.d.comb += ln.eq(clen + i + 1)
            for j in range(i):
                with m.If(stop[j]):
                    m.d.comb += ln.eq(i - j)
            e = Signal(Entity, name=f"ent{i}")
            parts = []
            for d in range(GROUPS):         # d = 0: the stop byte (least significant group)
                parts.append(Mux(ln > d, G[GROUPS + i - d], 0))
            m.d.comb += [e.value.eq(Cat(*parts)), e.len.eq(Mux(ln > GROUPS, LONG, ln))]
            ents.append(e)
        pos = []
        acc = Const(0, 4)
        for i in range(8):
            p = Signal(4, name=f"pos{i}")
            m.d.comb += p.eq(acc)
            pos.append(p)
            acc = acc + stop[i]
        nstop = Signal(4)
        m.d.comb += nstop.eq(acc)
        # trailing partial entity after the last stop
        tail_len = Signal(range(LONG + 9))
        m.d.comb += tail_len.eq(clen + beat.n)
        for j in range(8):
            with m.If(stop[j]):
                m.d.comb += tail_len.eq(beat.n - j - 1)
        endm = Signal(Entity)
        m.d.comb += [endm.end.eq(1), endm.partial.eq((tail_len != 0) | beat.abort)]
        with m.If(accept):
            with m.If(beat.last):
                m.d.sync += [carry.eq(0), clen.eq(0)]
            with m.Else():
                parts = [Mux(tail_len > d, G[GROUPS + 7 - d], 0) for d in range(GROUPS)]
                m.d.sync += [carry.eq(Cat(*parts)), clen.eq(Mux(tail_len > GROUPS, LONG, tail_len))]
        # the queue: shift out `consume`, append this beat's entities behind the rest
        n_in = Signal(5)
        m.d.comb += n_in.eq(Mux(accept & ~self.csr.control[0], nstop + beat.last, 0))
        keep = Signal(range(QUEUE + 1))
        m.d.comb += keep.eq(count - consume)
        for s in range(QUEUE):
            nxt = Signal(Entity, name=f"slot{s}_next")
            m.d.comb += nxt.eq(0)
            with m.Switch(consume):
                for c in range(VIEW + 2):
                    with m.Case(c):
                        if s + c < QUEUE:
                            m.d.comb += nxt.eq(slots[s + c])
            k = Signal(range(-QUEUE, QUEUE + 1), name=f"slot{s}_k")
            m.d.comb += k.eq(s - keep)
            for i in range(8):
                with m.If(accept & stop[i] & (k == pos[i])):
                    m.d.comb += nxt.eq(ents[i])
            with m.If(accept & beat.last & (k == nstop)):
                m.d.comb += nxt.eq(endm)
            m.d.sync += slots[s].eq(nxt)
        m.d.sync += count.eq(keep + n_in)
        m.d.comb += self.csr.packets.eq(accept & beat.first)

    # -- engine ------------------------------------------------------------ #

    def elaborate(self, platform):
        m = Module()
        csr = self.csr
        view = [Signal(Entity, name=f"view{k}") for k in range(VIEW)]
        count = Signal(range(QUEUE + 1))
        consume = Signal(range(VIEW + 2))
        self._splitter(m, view, count, consume)

        prog = [ct for ct in self.program]
        # program counter: 0 = message start, then each template's blocks
        blocks = []     # (template, list name, index, Block)
        for ct in prog:
            for part in ("before", "element", "after"):
                for i, b in enumerate(getattr(ct, part)):
                    blocks.append((ct, part, i, b))
        pc = Signal(range(len(blocks) + 2))
        SKIP = len(blocks) + 1      # drop the rest of the datagram
        pc_of = {(id(ct), part, i): n + 1 for n, (ct, part, i, _) in enumerate(blocks)}

        # dictionaries
        dicts: dict = {}
        for ct, _, _, b in blocks:
            for op in b.ops + ([b.length] if b.length else []):
                if op.key is not None and op.key not in dicts:
                    dicts[op.key] = _Dict(op.kind, f"{len(dicts)}")
        tid_def = Signal()
        tid_val = Signal(32)
        PM = 21
        msg_pmap = Signal(PM)          # bit 0 = the first bit of the map
        elem_pmap = Signal(PM)
        seq_left = Signal(32)
        msg_vals: dict = {}            # registered message-level values by field name

        # per-entity decoded views
        first_end = Signal(range(VIEW + 2))       # VIEW + 1: no end marker in view
        m.d.comb += first_end.eq(VIEW + 1)
        for k in reversed(range(VIEW)):
            with m.If((count > k) & view[k].end):
                m.d.comb += first_end.eq(k)
        u = [Signal(7 * GROUPS, name=f"u{k}") for k in range(VIEW)]
        s_ = [Signal(signed(7 * GROUPS + 1), name=f"s{k}") for k in range(VIEW)]
        pm = [Signal(PM, name=f"pm{k}") for k in range(VIEW)]
        firstc = [Signal(7, name=f"fc{k}") for k in range(VIEW)]
        for k in range(VIEW):
            e = view[k]
            m.d.comb += u[k].eq(e.value)
            neg = Signal(name=f"neg{k}")
            with m.Switch(e.len):
                for L in range(1, GROUPS + 1):
                    with m.Case(L):
                        m.d.comb += [neg.eq(e.value[7 * L - 1]), firstc[k].eq(e.value[7 * L - 7:7 * L])]
                        bits = []
                        for g in range(PM // 7):
                            gi = L - 1 - g
                            bits.append(e.value[7 * gi:7 * gi + 7] if gi >= 0 else Const(0, 7))
                        # group g bit 6 is pmap bit 7g: reverse each group into bit order
                        m.d.comb += pm[k].eq(Cat(*[Cat(*[grp[6 - j] for j in range(7)]) for grp in bits]))
            mask = Array([Const(((1 << (7 * GROUPS + 1)) - 1) ^ ((1 << (7 * L)) - 1), 7 * GROUPS + 1)
                          for L in range(16)])
            m.d.comb += s_[k].eq(Mux(neg, e.value | mask[e.len], e.value))
        U = Array(u)
        S = Array(s_)
        LENS = Array([v.len for v in view])
        FIRSTC = Array(firstc)
        PMS = Array(pm)

        # update queue (transactional): written by element blocks of the level template
        depth = self.queue_depth
        stored = [(n, w) for n, w in lv.UPDATE_LAYOUT if n not in ("price4", "price_bad")]
        Stored = data.StructLayout(dict(stored))
        m.submodules.uq = uq = Memory(shape=Stored, depth=depth, init=[])
        wr = uq.write_port()
        rd = uq.read_port(transparent_for=())
        w_ptr = Signal(range(depth * 2))
        c_ptr = Signal(range(depth * 2))
        r_ptr = Signal(range(depth * 2))
        room = Signal()
        m.d.comb += [room.eq((w_ptr - r_ptr)[:len(w_ptr)] < depth - 1), wr.addr.eq(w_ptr[:-1]), rd.addr.eq(r_ptr[:-1])]

        fire = Signal()
        err_kind = Signal(3)         # 0 none, 1 past_end, 2 unknown template, 3 seq too long, 4 bad field
        m.d.comb += consume.eq(0)

        def int_read(k_idx, op: Op, m_, tag):
            """(value, null) of an integer entity at index ``k_idx`` for op's type and nullability."""
            signed_ = op.ftype.startswith("int") or op.op == "delta" or op.gate is not None or op.name.endswith(
                "/exponent")
            raw = Signal(signed(72), name=f"raw_{tag}")
            m_.d.comb += raw.eq(S[k_idx] if signed_ else U[k_idx])
            val = Signal(signed(72), name=f"val_{tag}")
            null = Signal(name=f"null_{tag}")
            m_.d.comb += val.eq(raw)
            if op.optional:
                m_.d.comb += null.eq(raw == 0)
                with m_.If(raw > 0):
                    m_.d.comb += val.eq(raw - 1)
            return val, null

        def run_block(b: Block, ct: CompiledTemplate, tag: str, first: bool):
            """Comb logic of one block: entities used, fault, values; sync updates under `fire_b`.
            A template's first block runs in the message-start cycle (``first``): its entities follow
            the presence map and template identifier, its bits come straight from the map."""
            fire_b = Signal(name=f"fire_{tag}")
            idx = Signal(range(VIEW * 2 + 2), name=f"i0_{tag}")
            m.d.comb += idx.eq(start_used if first else (1 if b.pmap else 0))
            if b.segment == "msg":
                pbits = pm[0] if first else msg_pmap
            else:
                pbits = Signal(PM, name=f"pb_{tag}")
                m.d.comb += pbits.eq(PMS[0] if b.pmap else elem_pmap)
            bad = Signal(name=f"bad_{tag}")
            bads = []
            values = {}
            nulls = {}
            seq = []
            ops = list(b.ops) + ([b.length] if b.length else [])
            for n, op in enumerate(ops):
                t = f"{tag}_{n}"
                nxt = Signal(range(VIEW * 2 + 2), name=f"i_{t}")
                m.d.comb += nxt.eq(idx)
                bit = pbits[op.bit] if op.bit is not None else None
                d = dicts.get(op.key)
                val = Signal(signed(72), name=f"v_{t}")
                exp = Signal(signed(8), name=f"e_{t}")
                chars = Signal(7 * GROUPS, name=f"c_{t}")
                ln = Signal(4, name=f"l_{t}")
                null = Signal(name=f"n_{t}")
                present = Signal(name=f"p_{t}")
                obad = Signal(name=f"ob_{t}")
                gate_ok = ~nulls[op.gate] if op.gate is not None else Const(1)
                bads.append(obad & gate_ok)
                # -- what is read from the stream --
                rval = Signal(signed(72), name=f"rv_{t}")
                rnull = Signal(name=f"rn_{t}")
                rexp = Signal(signed(8), name=f"re_{t}")
                rch = Signal(7 * GROUPS, name=f"rc_{t}")
                rln = Signal(4, name=f"rl_{t}")
                if op.kind == "int":
                    v, nl = int_read(idx, op, m, t)
                    m.d.comb += [rval.eq(v), rnull.eq(nl)]
                    width = 1
                elif op.kind == "decimal":
                    ev, enl = int_read(idx, Op(op.name + "/exponent", "int", "int32", op.optional, None, None, None,
                                               None, op.segment), m, t + "e")
                    m.d.comb += [rexp.eq(ev), rnull.eq(enl), rval.eq(S[idx + 1])]
                    width = Mux(enl, 1, 2)
                else:
                    L = LENS[idx]
                    fc = FIRSTC[idx]
                    m.d.comb += [rch.eq(U[idx]), rln.eq(L), rnull.eq(0)]
                    with m.If(fc == 0):
                        if op.optional:
                            with m.If(L == 1):
                                m.d.comb += [rnull.eq(1), rln.eq(0)]
                            with m.Elif(L == 2):
                                m.d.comb += rln.eq(0)
                            with m.Else():
                                m.d.comb += rln.eq(L - 2)
                        else:
                            m.d.comb += rln.eq(Mux(L == 1, 0, L - 1))
                    width = 1
                # -- the operator --
                kind, init = op.op, op.value
                if kind is None or kind == "delta":
                    m.d.comb += present.eq(1)
                elif kind == "constant":
                    m.d.comb += present.eq(0)
                else:
                    m.d.comb += present.eq(bit)
                with m.If(present & gate_ok):
                    m.d.comb += nxt.eq(idx + width)
                ftype_bits = 64 if op.kind != "int" else {"int32": 32, "uInt32": 32}.get(op.ftype, 64)

                def const_assign(value):
                    if op.kind == "int":
                        return [val.eq(value)]
                    if op.kind == "decimal":
                        sn = value if isinstance(value, ScaledNumber) else ScaledNumber(0, 0)
                        return [exp.eq(sn.exponent), val.eq(sn.mantissa)]
                    c, L_ = _ascii_const(value or "")
                    return [chars.eq(c), ln.eq(L_)]

                def from_read():
                    return [val.eq(rval), exp.eq(rexp), chars.eq(rch), ln.eq(rln), null.eq(rnull)]

                def from_dict():
                    out = [val.eq(d.value)]
                    if d.exp is not None:
                        out.append(exp.eq(d.exp))
                    if d.chars is not None:
                        out += [chars.eq(d.chars), ln.eq(d.len)]
                    return out

                def store(st, use_val=True):
                    out = [d.state.eq(st)]
                    if use_val:
                        out.append(d.value.eq(val[:64]))
                        if d.exp is not None:
                            out.append(d.exp.eq(exp))
                        if d.chars is not None:
                            out += [d.chars.eq(chars), d.len.eq(ln)]
                    return out

                wr_dict = []
                if kind is None:
                    m.d.comb += from_read()
                elif kind == "constant":
                    m.d.comb += const_assign(init)
                    if op.optional:
                        m.d.comb += null.eq(~bit)
                elif kind == "default":
                    with m.If(bit):
                        m.d.comb += from_read()
                    with m.Else():
                        if init is None:
                            m.d.comb += null.eq(1)
                        else:
                            m.d.comb += const_assign(init)
                elif kind in ("copy", "increment"):
                    st = Signal(2, name=f"st_{t}")
                    write = Signal(name=f"w_{t}")
                    with m.If(bit):
                        m.d.comb += from_read()
                        m.d.comb += [st.eq(Mux(rnull, 1, 2)), write.eq(1)]
                    with m.Elif(d.state == 0):
                        if init is None:
                            if op.optional:
                                m.d.comb += [null.eq(1), st.eq(1), write.eq(1)]
                            else:
                                m.d.comb += obad.eq(1)
                        else:
                            m.d.comb += const_assign(init)
                            m.d.comb += [st.eq(2), write.eq(1)]
                    with m.Elif(d.state == 1):
                        if op.optional:
                            m.d.comb += null.eq(1)
                        else:
                            m.d.comb += obad.eq(1)
                    with m.Else():
                        m.d.comb += from_dict()
                        if kind == "increment":
                            m.d.comb += [val.eq(_inc(d.value, op.ftype)), st.eq(2), write.eq(1)]
                    wr_dict = [(write, st)]
                else:   # delta
                    base_v = Signal(signed(72), name=f"bv_{t}")
                    base_e = Signal(signed(8), name=f"be_{t}")
                    sn = init if isinstance(init, ScaledNumber) else ScaledNumber(0, 0)
                    with m.If(d.state == 2):
                        m.d.comb += base_v.eq(d.value)
                        if d.exp is not None:
                            m.d.comb += base_e.eq(d.exp)
                    with m.Else():
                        if op.kind == "decimal":
                            m.d.comb += [base_v.eq(sn.mantissa), base_e.eq(sn.exponent)]
                        else:
                            m.d.comb += base_v.eq(init or 0)
                    with m.If(d.state == 1):
                        m.d.comb += obad.eq(1)
                    m.d.comb += [null.eq(rnull), val.eq(_wrap_sig(base_v + rval, op.ftype)), exp.eq(base_e + rexp)]
                    write = Signal(name=f"w_{t}")
                    m.d.comb += write.eq(~rnull)
                    wr_dict = [(write, Const(2, 2))]
                with m.If(fire_b):
                    for write, st in wr_dict:
                        with m.If(write & gate_ok):
                            m.d.sync += store(st, use_val=True)
                values[op.name] = (val, exp, chars, ln)
                nulls[op.name] = null
                seq.append((op, val, exp, chars, ln, null))
                idx = nxt
            # the entities used and the fault checks
            used = idx
            long_ = Signal(name=f"long_{tag}")
            for k in range(VIEW):
                with m.If((k < used) & (view[k].len == LONG) & ~view[k].end):
                    m.d.comb += long_.eq(1)
            m.d.comb += bad.eq(Cat(*bads).any() if bads else 0)
            return fire_b, used, bad | long_, values, nulls, seq

        # -- message start: presence map and template identifier --
        start_used = Signal(range(3))
        tid_present = Signal()
        tid = Signal(32)
        m.d.comb += [tid_present.eq(pm[0][0]), start_used.eq(Mux(tid_present, 2, 1)),
                     tid.eq(Mux(tid_present, u[1], tid_val))]
        known = Signal()
        is_host = Signal()
        for ct in prog:
            with m.If(tid == ct.id):
                m.d.comb += known.eq(1)
                if ct.host:
                    m.d.comb += is_host.eq(1)
        msg_done = Signal()
        level_tpl = self.templates[lv.LEVEL_TEMPLATE].name if any(
            t.local_name == lv.LEVEL_TEMPLATE for t in self.templates) else None
        # skipping to the end of the datagram
        reset_dicts = Signal()
        partial_at = Array([v.partial for v in view])

        upd = Signal(Stored)
        upd_we = Signal()
        m.d.comb += [wr.data.eq(upd), wr.en.eq(upd_we)]
        abort_msg = Signal()

        merged = {n for n, (ct, part, i, b) in enumerate(blocks) if part == "before" and i == 0}
        ran = [run_block(b, ct, f"b{n}", n in merged) for n, (ct, part, i, b) in enumerate(blocks)]

        def handle(n, on_fire=()):
            """Run block ``n`` if its entities are in: fault checks, fire, next block, the update."""
            ct, part, i, b = blocks[n]
            fire_b, used, bad, values, nulls, seq = ran[n]
            is_level = ct.name == level_tpl and part == "element"
            ok_room = room if is_level else 1
            with m.If(first_end < used):
                m.d.comb += [consume.eq(first_end + 1), reset_dicts.eq(1), csr.past_end.eq(1),
                             abort_msg.eq(1)]
                m.d.sync += pc.eq(0)
            with m.Elif((count >= used) & ok_room):
                with m.If(bad):
                    m.d.comb += [csr.bad_field.eq(1), abort_msg.eq(1)]
                    m.d.sync += pc.eq(SKIP)
                with m.Else():
                    m.d.comb += [fire_b.eq(1), consume.eq(used)]
                    m.d.sync += list(on_fire)
                    self._advance(m, ct, part, i, b, pc, pc_of, seq_left, values, nulls, msg_pmap,
                                  elem_pmap, pm, msg_done, abort_msg, SKIP, csr, msg_vals)
                    if is_level:
                        self._update(m, upd, upd_we, values, nulls, msg_vals)
                    # the datagram's end marker right behind the message: take it in this cycle
                    with m.If(msg_done & (first_end == used)):
                        m.d.comb += [consume.eq(used + 1), reset_dicts.eq(1),
                                     csr.past_end.eq(partial_at[first_end])]

        with m.Switch(pc):
            with m.Case(0):
                with m.If((count > 0) & view[0].end):
                    m.d.comb += [consume.eq(1), reset_dicts.eq(1)]
                    with m.If(view[0].partial):
                        m.d.comb += csr.past_end.eq(1)
                with m.Elif(first_end < start_used):
                    m.d.comb += [consume.eq(first_end + 1), reset_dicts.eq(1), csr.past_end.eq(1)]
                with m.Elif(count >= start_used):
                    with m.If(Mux(tid_present, view[1].len, view[0].len) == LONG):
                        m.d.comb += csr.bad_field.eq(1)
                        m.d.sync += pc.eq(SKIP)
                    with m.Elif(~known | (~tid_present & ~tid_def)):
                        m.d.comb += csr.unknown_template.eq(1)
                        m.d.sync += pc.eq(SKIP)
                    with m.Elif(is_host):
                        m.d.comb += csr.host_messages.eq(1)
                        m.d.sync += pc.eq(SKIP)
                    for ct in prog:
                        if ct.host:
                            continue
                        with m.Elif(tid == ct.id):
                            regs = [msg_pmap.eq(pm[0]), tid_val.eq(tid), tid_def.eq(1)]
                            if ct.before:
                                handle(pc_of[(id(ct), "before", 0)] - 1, regs)
                            else:
                                m.d.comb += consume.eq(start_used)
                                m.d.sync += regs
                                if ct.after:
                                    m.d.sync += pc.eq(pc_of[(id(ct), "after", 0)])
                                else:
                                    m.d.comb += msg_done.eq(1)
                                    with m.If(first_end == start_used):
                                        m.d.comb += [consume.eq(start_used + 1), reset_dicts.eq(1),
                                                     csr.past_end.eq(partial_at[first_end])]
            with m.Case(SKIP):
                m.d.comb += consume.eq(Mux(first_end < VIEW, first_end + 1, Mux(count > VIEW, VIEW, count)))
                with m.If(first_end < VIEW):
                    m.d.comb += reset_dicts.eq(1)
                    m.d.sync += pc.eq(0)
            for n in range(len(blocks)):
                if n not in merged:
                    with m.Case(n + 1):
                        handle(n)
        # the end of a datagram resets every dictionary (after the blocks' writes, so it wins)
        with m.If(reset_dicts):
            m.d.sync += [d.state.eq(0) for d in dicts.values()]
            m.d.sync += tid_def.eq(0)
        # messages and the update queue's commit/rollback
        m.d.comb += csr.messages.eq(msg_done)
        with m.If(upd_we):
            m.d.sync += w_ptr.eq(w_ptr + 1)
        with m.If(abort_msg):
            m.d.sync += w_ptr.eq(c_ptr)
        with m.Elif(msg_done):
            m.d.sync += c_ptr.eq(w_ptr + upd_we)

        # -- output: queue read, price4 conversion register --
        rv = Signal()
        take = Signal()
        load = Signal()
        m.d.comb += [take.eq(rv & (~self.o.valid | self.o.ready)),
                     load.eq((r_ptr != c_ptr) & (~rv | take)), rd.en.eq(load)]
        with m.If(load):
            m.d.sync += r_ptr.eq(r_ptr + 1)
        m.d.sync += rv.eq(load | (rv & ~take))
        with m.If(take):
            r = rd.data
            m.d.sync += [getattr(self.o.payload, n).eq(getattr(r, n)) for n, _ in stored]
            p4 = Signal(32)
            bad_p = Signal()
            m.d.comb += bad_p.eq(1)
            with m.Switch(r.price_exponent):
                for e in lv.PRICE_EXPONENTS:
                    with m.Case(e & 0xFF):
                        m.d.comb += [p4.eq(r.price_mantissa[:32] * (10 ** (e + 4))), bad_p.eq(0)]
            m.d.sync += [self.o.payload.price4.eq(Mux(bad_p | r.price_null, 0, p4)),
                         self.o.payload.price_bad.eq(bad_p & ~r.price_null)]
            m.d.sync += self.o.valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += csr.updates.eq(self.o.valid & self.o.ready)
        return m

    def _advance(self, m, ct, part, i, b, pc, pc_of, seq_left, values, nulls, msg_pmap, elem_pmap, pm,
                 msg_done, abort_msg, SKIP, csr, msg_vals):
        """Next block after ``b`` fired (sync), sequence bookkeeping, message end."""
        if b.pmap and part == "element":
            m.d.sync += elem_pmap.eq(pm[0])
        if b.segment == "msg":
            for name, (val, exp, chars, ln) in values.items():
                if name not in msg_vals:
                    msg_vals[name] = Signal(64, name=f"m_{name}")
                m.d.sync += msg_vals[name].eq(val[:64])

        def goto(target):
            if target is None:
                m.d.sync += pc.eq(0)
                m.d.comb += msg_done.eq(1)
            else:
                m.d.sync += pc.eq(pc_of[(id(ct),) + target])

        after = ("after", 0) if ct.after else None
        if part == "before" and i + 1 < len(ct.before):
            goto(("before", i + 1))
        elif part == "before":
            if b.length is None:
                goto(after)
                return
            n_val = values[b.length.name][0]
            n_null = nulls[b.length.name]
            with m.If(n_null | (n_val == 0)):
                goto(after)
            with m.Elif(n_val > self.max_sequence):
                m.d.comb += [csr.seq_too_long.eq(1), abort_msg.eq(1)]
                m.d.sync += pc.eq(SKIP)
            with m.Else():
                m.d.sync += seq_left.eq(n_val)
                goto(("element", 0))
        elif part == "element":
            if i + 1 < len(ct.element):
                goto(("element", i + 1))
            else:
                m.d.sync += seq_left.eq(seq_left - 1)
                with m.If(seq_left > 1):
                    goto(("element", 0))
                with m.Else():
                    goto(after)
        else:
            goto(("after", i + 1) if i + 1 < len(ct.after) else None)

    def _update(self, m, upd, upd_we, values, nulls, msg_vals):
        m.d.comb += upd_we.eq(~self.csr.control[1])
        f = lv.LEVEL_MAP
        px = f["price"]
        exp_name, mant_name = px + "/exponent", px + "/mantissa"
        side_c, side_l = values[f["side"]][2], values[f["side"]][3]
        m.d.comb += [
            upd.security_id.eq(values[f["security_id"]][0]),
            upd.action.eq(values[f["action"]][0]),
            upd.level.eq(values[f["level"]][0]),
            upd.rpt_seq.eq(values[f["rpt_seq"]][0]),
            upd.price_null.eq(nulls[exp_name]),
            upd.price_exponent.eq(Mux(nulls[exp_name], 0, values[exp_name][0])),
            upd.price_mantissa.eq(Mux(nulls[exp_name], 0, values[mant_name][0])),
            upd.size_null.eq(nulls[f["size"]]),
            upd.size.eq(Mux(nulls[f["size"]], 0, values[f["size"]][0])),
            upd.msg_seq.eq(msg_vals[lv.MESSAGE_MAP["msg_seq"]]),
            upd.sending_time.eq(msg_vals[lv.MESSAGE_MAP["sending_time"]]),
        ]
        sides = {_ascii_const(s): bit for s, bit in lv.SIDES.items()}
        m.d.comb += [upd.side.eq(1), upd.side_bad.eq(1)]
        for (c, L), bit in sides.items():
            with m.If((side_c == c) & (side_l == L)):
                m.d.comb += [upd.side.eq(bit), upd.side_bad.eq(0)]


def _inc(v, ftype):
    """prev + 1 with the type's wrap-around (section 6.3.7.1: max + 1 is min)."""
    return _wrap_sig(v + 1, ftype)


def _wrap_sig(v, ftype):
    if ftype == "decimal":
        ftype = "int64"
    bits = {"int32": 32, "uInt32": 32}.get(ftype, 64)
    if ftype.startswith("int") and ftype != "int64" or ftype == "int32":
        return v[:bits].as_signed()
    if ftype == "int64":
        return v[:64].as_signed()
    return v[:bits]
