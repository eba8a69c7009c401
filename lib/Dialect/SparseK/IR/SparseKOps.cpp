//===- SparseKOps.cpp - Verifiers and interfaces of sparsek ops -----------===//
//
// Every verifier diagnostic names the operand at fault and says what was
// expected, so that a user can fix the IR from the message alone. Dimensions
// are compared only when both sides are static: dynamic sizes are checked at
// run time by the lowerings.
//
//===----------------------------------------------------------------------===//
#include "sparsek/Dialect/SparseK/IR/SparseKOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringMap.h"

#include <cmath>

using namespace mlir;
using namespace mlir::sparsek;

namespace {
/// An operand as the verifier talks about it: its name in the op's
/// documentation, its layout ("[B, Hq, T, D]") and its type.
struct NamedOperand {
  StringRef name;
  StringRef layout;
  ShapedType type;
  int64_t dim(unsigned i) const { return type.getDimSize(i); }
};

/// Checks operands of one op and reports the first problem found.
class OperandChecker {
public:
  explicit OperandChecker(Operation *op) : op(op) {}

  /// `v` must have the rank its layout spells.
  FailureOr<NamedOperand> get(Value v, StringRef name, StringRef layout,
                              int64_t rank) {
    auto type = cast<ShapedType>(v.getType());
    if (type.getRank() != rank) {
      op->emitOpError() << "'" << name << "' must have rank " << rank << " "
                        << layout << ", got " << type;
      return failure();
    }
    return NamedOperand{name, layout, type};
  }

  /// The element type of `o` must be f32.
  LogicalResult f32(const NamedOperand &o) {
    if (o.type.getElementType().isF32())
      return success();
    return op->emitOpError()
           << "'" << o.name << "' must have element type f32, got "
           << o.type.getElementType();
  }

  /// The element type of `o` must be f16, bf16 or f32.
  LogicalResult floatData(const NamedOperand &o) {
    Type e = o.type.getElementType();
    if (e.isF16() || e.isBF16() || e.isF32())
      return success();
    return op->emitOpError() << "'" << o.name
                             << "' must have element type f16, bf16 or f32, "
                                "got "
                             << e;
  }

  /// The element type of `o` must be a signless integer of `width` bits (or
  /// either 32 or 64 when `width` is 0).
  LogicalResult integer(const NamedOperand &o, unsigned width) {
    auto it = dyn_cast<IntegerType>(o.type.getElementType());
    bool ok = it && it.isSignless() &&
              (width ? it.getWidth() == width
                     : (it.getWidth() == 32 || it.getWidth() == 64));
    if (ok)
      return success();
    auto diag = op->emitOpError()
                << "'" << o.name << "' must have element type ";
    if (width)
      diag << "i" << width;
    else
      diag << "i32 or i64";
    return diag << ", got " << o.type.getElementType();
  }

  /// `b` must have the element type of `a`.
  LogicalResult sameElementType(const NamedOperand &a, const NamedOperand &b) {
    if (a.type.getElementType() == b.type.getElementType())
      return success();
    return op->emitOpError()
           << "'" << b.name << "' must have the element type of '" << a.name
           << "' (" << a.type.getElementType() << "), got "
           << b.type.getElementType();
  }

  /// Dimension `bd` of `b` and dimension `ad` of `a` both have the size
  /// named `sym`. Every static size bound to one name must agree, across all
  /// calls on this checker, so mismatches are found through dynamic operands
  /// too (a static B of the query against a static B of the positions when
  /// the KV slots in between are dynamic).
  LogicalResult sameDim(const NamedOperand &a, unsigned ad,
                        const NamedOperand &b, unsigned bd, StringRef sym) {
    if (failed(bind(a, ad, sym)))
      return failure();
    return bind(b, bd, sym);
  }

  /// Dimension `d` of `o` (named `sym`) must be static and equal `expected`.
  LogicalResult staticDim(const NamedOperand &o, unsigned d, StringRef sym,
                          int64_t expected, StringRef why) {
    if (o.dim(d) == expected)
      return success();
    auto diag = op->emitOpError()
                << "'" << o.name << "' dimension " << d << " (" << sym
                << ") must be static and "
                << "equal " << why << " = " << expected << ", got ";
    if (ShapedType::isDynamic(o.dim(d)))
      diag << "?";
    else
      diag << o.dim(d);
    return diag;
  }

  /// Checks every pair (a, ad, b, bd, sym) with sameDim.
  LogicalResult
  sameDims(ArrayRef<std::tuple<const NamedOperand *, unsigned,
                               const NamedOperand *, unsigned, StringRef>>
               pairs) {
    for (auto [a, ad, b, bd, sym] : pairs)
      if (failed(sameDim(*a, ad, *b, bd, sym)))
        return failure();
    return success();
  }

  LogicalResult budget(int64_t k, int64_t w, bool kKnown = true) {
    if (k < 0)
      return op->emitOpError() << "budget k must be >= 0, got " << k;
    if (w < 0)
      return op->emitOpError() << "window w must be >= 0, got " << w;
    if (kKnown && k == 0 && w == 0)
      return op->emitOpError()
             << "k = 0 with w = 0 leaves no key to attend to; "
                "give a positive budget k or window w";
    return success();
  }

  /// Hq must be a multiple of Hkv (grouped-query attention).
  LogicalResult headRatio(const NamedOperand &q, const NamedOperand &kv) {
    int64_t hq = q.dim(1), hkv = kv.dim(1);
    if (ShapedType::isDynamic(hq) || ShapedType::isDynamic(hkv))
      return success();
    if (hkv > 0 && hq % hkv == 0)
      return success();
    return op->emitOpError()
           << "query heads Hq = " << hq << " ('" << q.name
           << "' dimension 1) must be a positive multiple of KV heads Hkv = "
           << hkv << " ('" << kv.name << "' dimension 1)";
  }

  /// T (dimension `td` of `q`) must not exceed S (dimension `sd` of `kv`).
  LogicalResult queriesFitKeys(const NamedOperand &q, unsigned td,
                               const NamedOperand &kv, unsigned sd) {
    int64_t t = q.dim(td), s = kv.dim(sd);
    if (ShapedType::isDynamic(t) || ShapedType::isDynamic(s) || t <= s)
      return success();
    return op->emitOpError() << "the " << t << " queries of '" << q.name
                             << "' must be the last of the " << s
                             << " positions of '" << kv.name << "' (T <= S)";
  }

  LogicalResult scale(std::optional<APFloat> scale) {
    if (!scale)
      return success();
    double s = scale->convertToDouble();
    if (std::isfinite(s) && s > 0)
      return success();
    auto diag = op->emitOpError()
                << "scale must be a finite positive number, got ";
    if (std::isnan(s))
      return diag << "nan";
    if (std::isinf(s))
      return diag << (s > 0 ? "inf" : "-inf");
    return diag << s;
  }

private:
  LogicalResult bind(const NamedOperand &o, unsigned d, StringRef sym) {
    if (ShapedType::isDynamic(o.dim(d)))
      return success();
    auto [it, inserted] = sizes.try_emplace(sym, Binding{o, d});
    const Binding &first = it->second;
    if (inserted || first.operand.dim(first.dim) == o.dim(d))
      return success();
    return op->emitOpError()
           << "'" << o.name << "' dimension " << d << " (" << sym << ") is "
           << o.dim(d) << " but must equal '" << first.operand.name
           << "' dimension " << first.dim << " (" << sym
           << ") = " << first.operand.dim(first.dim);
  }

  struct Binding {
    NamedOperand operand;
    unsigned dim;
  };
  Operation *op;
  llvm::StringMap<Binding> sizes;
};
} // namespace

/// The inits of every sparsek op are its trailing `n` operands.
static MutableOperandRange trailingInits(Operation *op, unsigned n) {
  return MutableOperandRange(op, op->getNumOperands() - n, n);
}

/// Tensor and buffer forms do not mix: with tensor destinations every shaped
/// operand is a tensor, with memref destinations every one is a memref.
/// (The DPS interface itself checks destinations against results.)
static LogicalResult verifyOneForm(Operation *op) {
  auto dps = cast<DestinationStyleOpInterface>(op);
  bool buffers = dps.hasPureBufferSemantics();
  if (!buffers && !dps.hasPureTensorSemantics())
    return op->emitOpError()
           << "operands must be all ranked tensors (tensor form) or all "
              "memrefs (buffer form)";
  return success();
}

/// Buffer form reads the inputs and overwrites the destinations completely
/// (no destination is read); tensor form has no memory effects.
static void getDpsEffects(
    Operation *op,
    SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>>
        &effects) {
  auto dps = cast<DestinationStyleOpInterface>(op);
  for (OpOperand &operand : op->getOpOperands()) {
    if (!isa<MemRefType>(operand.get().getType()))
      continue;
    if (dps.isDpsInit(&operand))
      effects.emplace_back(MemoryEffects::Write::get(), &operand,
                           SideEffects::DefaultResource::get());
    else
      effects.emplace_back(MemoryEffects::Read::get(), &operand,
                           SideEffects::DefaultResource::get());
  }
}

#define SPARSEK_DPS_EFFECTS(OP)                                                \
  void OP::getEffects(                                                         \
      SmallVectorImpl<SideEffects::EffectInstance<MemoryEffects::Effect>>      \
          &effects) {                                                          \
    getDpsEffects(*this, effects);                                             \
  }
SPARSEK_DPS_EFFECTS(ScoreOp)
SPARSEK_DPS_EFFECTS(MaskOp)
SPARSEK_DPS_EFFECTS(SelectOp)
SPARSEK_DPS_EFFECTS(AttentionOp)
SPARSEK_DPS_EFFECTS(SelectAttentionOp)
SPARSEK_DPS_EFFECTS(DecodeAttentionOp)
SPARSEK_DPS_EFFECTS(AttentionGradOp)
SPARSEK_DPS_EFFECTS(SelectGradOp)
SPARSEK_DPS_EFFECTS(SelectAttentionGradOp)
SPARSEK_DPS_EFFECTS(ScoreGradOp)
SPARSEK_DPS_EFFECTS(MaskGradOp)
#undef SPARSEK_DPS_EFFECTS

/// Binds `dst` to the checked operand or returns failure from the caller.
#define SPARSEK_GET(dst, expr)                                                 \
  auto dst##OrFail = (expr);                                                   \
  if (failed(dst##OrFail))                                                     \
    return failure();                                                          \
  NamedOperand dst = *dst##OrFail;

/// Shared checks of q, key and value in the attention ops: `key` is always
/// [B, Hkv, S or slots, D]; `q` has its T dimension at `tDim` (0: none) and
/// its head dimension D at `qHeadDim`.
static LogicalResult verifyQKV(OperandChecker &c, const NamedOperand &q,
                               const NamedOperand &key,
                               const NamedOperand &value,
                               const NamedOperand &out, unsigned tDim,
                               unsigned qHeadDim) {
  if (failed(c.floatData(q)) || failed(c.sameElementType(q, key)) ||
      failed(c.sameElementType(q, value)) ||
      failed(c.sameElementType(value, out)))
    return failure();
  if (failed(c.sameDims({{&q, 0, &key, 0, "B"},
                         {&q, 0, &value, 0, "B"},
                         {&q, 0, &out, 0, "B"},
                         {&key, 1, &value, 1, "Hkv"},
                         {&q, 1, &out, 1, "Hq"},
                         {&q, qHeadDim, &key, 3, "D"},
                         {&value, value.type.getRank() - 1, &out,
                          out.type.getRank() - 1, "Dv"}})))
    return failure();
  if (tDim && failed(c.sameDims(
                  {{&key, 2, &value, 2, "S"}, {&q, tDim, &out, tDim, "T"}})))
    return failure();
  return c.headRatio(q, key);
}

//===----------------------------------------------------------------------===//
// ScoreOp
//===----------------------------------------------------------------------===//

MutableOperandRange ScoreOp::getDpsInitsMutable() { return getInitMutable(); }

LogicalResult ScoreOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  SPARSEK_GET(x, c.get(getInput(), "input", "[B, T, C]", 3));
  SPARSEK_GET(wsc, c.get(getWeight(), "weight", "[Hkv, C]", 2));
  SPARSEK_GET(u, c.get(getInit(), "init", "[B, Hkv, T]", 3));
  if (failed(c.floatData(x)) || failed(c.sameElementType(x, wsc)) ||
      failed(c.f32(u)))
    return failure();
  if (failed(c.sameDims({{&x, 0, &u, 0, "B"},
                         {&x, 1, &u, 2, "T"},
                         {&x, 2, &wsc, 1, "C"},
                         {&wsc, 0, &u, 1, "Hkv"}})))
    return failure();
  for (auto [v, name] :
       {std::pair{getBias(), StringRef("bias")}, {getSlope(), "slope"}}) {
    if (!v)
      continue;
    SPARSEK_GET(o, c.get(v, name, "[Hkv]", 1));
    if (failed(c.f32(o)) || failed(c.sameDim(wsc, 0, o, 0, "Hkv")))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// MaskOp
//===----------------------------------------------------------------------===//

MutableOperandRange MaskOp::getDpsInitsMutable() {
  return trailingInits(*this, 2);
}

void MaskOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  if (getNumResults() == 2) {
    setNameFn(getResult(0), "mask");
    setNameFn(getResult(1), "tau");
  }
}

LogicalResult MaskOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  if (getKAttr().getInt() < 0)
    return emitOpError() << "budget k must be >= 0, got "
                         << getKAttr().getInt();
  auto zType = cast<ShapedType>(getInput().getType());
  if (zType.getRank() < 1)
    return emitOpError() << "'input' must have rank >= 1 (rows on the last "
                            "axis), got "
                         << zType;
  int64_t rank = zType.getRank();
  SPARSEK_GET(z, c.get(getInput(), "input", "[..., N]", rank));
  SPARSEK_GET(p, c.get(getMaskInit(), "mask_init", "[..., N]", rank));
  SPARSEK_GET(tau, c.get(getTauInit(), "tau_init", "[...]", rank - 1));
  if (failed(c.f32(z)) || failed(c.f32(p)) || failed(c.f32(tau)))
    return failure();
  for (unsigned d = 0; d < rank; ++d) {
    std::string sym = d + 1 == rank ? "N" : "batch " + std::to_string(d);
    if (failed(c.sameDim(z, d, p, d, sym)))
      return failure();
    if (d + 1 < rank && failed(c.sameDim(z, d, tau, d, sym)))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// SelectOp
//===----------------------------------------------------------------------===//

MutableOperandRange SelectOp::getDpsInitsMutable() {
  return trailingInits(*this, 3);
}

void SelectOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  if (getNumResults() == 3) {
    setNameFn(getResult(0), "indices");
    setNameFn(getResult(1), "gates");
    setNameFn(getResult(2), "tau");
  }
}

LogicalResult SelectOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  if (failed(c.budget(getKAttr().getInt(), getWAttr().getInt())))
    return failure();
  SPARSEK_GET(u, c.get(getScores(), "scores", "[B, Hkv, S]", 3));
  SPARSEK_GET(idx,
              c.get(getIndicesInit(), "indices_init", "[B, Hkv, T, k]", 4));
  SPARSEK_GET(g, c.get(getGatesInit(), "gates_init", "[B, Hkv, T, k]", 4));
  SPARSEK_GET(tau, c.get(getTauInit(), "tau_init", "[B, Hkv, T]", 3));
  if (failed(c.f32(u)) || failed(c.integer(idx, 0)) || failed(c.f32(g)) ||
      failed(c.f32(tau)))
    return failure();
  // A dynamic list length is checked at run time (min(k, S) <= K <= k).
  if (!ShapedType::isDynamic(idx.dim(3)) && idx.dim(3) != getKAttr().getInt())
    return emitOpError() << "'indices_init' dimension 3 (K) must equal the "
                            "budget k = "
                         << getKAttr().getInt()
                         << " when static (a dynamic K is checked at run "
                            "time), got "
                         << idx.dim(3);
  if (failed(c.sameDims({{&u, 0, &idx, 0, "B"},
                         {&u, 1, &idx, 1, "Hkv"},
                         {&idx, 0, &g, 0, "B"},
                         {&idx, 1, &g, 1, "Hkv"},
                         {&idx, 2, &g, 2, "T"},
                         {&idx, 3, &g, 3, "k"},
                         {&u, 0, &tau, 0, "B"},
                         {&u, 1, &tau, 1, "Hkv"},
                         {&idx, 2, &tau, 2, "T"}})))
    return failure();
  return c.queriesFitKeys(tau, 2, u, 2);
}

//===----------------------------------------------------------------------===//
// AttentionOp
//===----------------------------------------------------------------------===//

MutableOperandRange AttentionOp::getDpsInitsMutable() {
  return getInitMutable();
}

LogicalResult AttentionOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  SPARSEK_GET(q, c.get(getQuery(), "query", "[B, Hq, T, D]", 4));
  SPARSEK_GET(key, c.get(getKey(), "key", "[B, Hkv, S, D]", 4));
  SPARSEK_GET(value, c.get(getValue(), "value", "[B, Hkv, S, Dv]", 4));
  SPARSEK_GET(idx, c.get(getIndices(), "indices", "[B, Hkv, T, K]", 4));
  SPARSEK_GET(g, c.get(getGates(), "gates", "[B, Hkv, T, K]", 4));
  SPARSEK_GET(out, c.get(getInit(), "init", "[B, Hq, T, Dv]", 4));
  int64_t k = idx.dim(3);
  if (failed(c.budget(ShapedType::isDynamic(k) ? 1 : k, getWAttr().getInt(),
                      !ShapedType::isDynamic(k))) ||
      failed(c.scale(getScale())))
    return failure();
  if (failed(verifyQKV(c, q, key, value, out, 2, 3)))
    return failure();
  if (failed(c.integer(idx, 0)) || failed(c.f32(g)))
    return failure();
  if (failed(c.sameDims({{&key, 0, &idx, 0, "B"},
                         {&key, 1, &idx, 1, "Hkv"},
                         {&q, 2, &idx, 2, "T"},
                         {&idx, 0, &g, 0, "B"},
                         {&idx, 1, &g, 1, "Hkv"},
                         {&idx, 2, &g, 2, "T"},
                         {&idx, 3, &g, 3, "K"}})))
    return failure();
  return c.queriesFitKeys(q, 2, key, 2);
}

//===----------------------------------------------------------------------===//
// SelectAttentionOp
//===----------------------------------------------------------------------===//

MutableOperandRange SelectAttentionOp::getDpsInitsMutable() {
  return getInitMutable();
}

LogicalResult SelectAttentionOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  if (failed(c.budget(getKAttr().getInt(), getWAttr().getInt())) ||
      failed(c.scale(getScale())))
    return failure();
  SPARSEK_GET(q, c.get(getQuery(), "query", "[B, Hq, T, D]", 4));
  SPARSEK_GET(key, c.get(getKey(), "key", "[B, Hkv, S, D]", 4));
  SPARSEK_GET(value, c.get(getValue(), "value", "[B, Hkv, S, Dv]", 4));
  SPARSEK_GET(u, c.get(getScores(), "scores", "[B, Hkv, S]", 3));
  SPARSEK_GET(out, c.get(getInit(), "init", "[B, Hq, T, Dv]", 4));
  if (failed(verifyQKV(c, q, key, value, out, 2, 3)) || failed(c.f32(u)))
    return failure();
  if (failed(c.sameDims({{&key, 0, &u, 0, "B"},
                         {&key, 1, &u, 1, "Hkv"},
                         {&key, 2, &u, 2, "S"}})))
    return failure();
  return c.queriesFitKeys(q, 2, key, 2);
}

//===----------------------------------------------------------------------===//
// DecodeAttentionOp
//===----------------------------------------------------------------------===//

MutableOperandRange DecodeAttentionOp::getDpsInitsMutable() {
  return getInitMutable();
}

LogicalResult DecodeAttentionOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  if (failed(c.budget(getKAttr().getInt(), getWAttr().getInt())) ||
      failed(c.scale(getScale())))
    return failure();
  SPARSEK_GET(q, c.get(getQuery(), "query", "[B, Hq, D]", 3));
  SPARSEK_GET(key, c.get(getKeySlots(), "key_slots", "[B, Hkv, k + w, D]", 4));
  SPARSEK_GET(value,
              c.get(getValueSlots(), "value_slots", "[B, Hkv, k + w, Dv]", 4));
  SPARSEK_GET(sc, c.get(getSlotScores(), "slot_scores", "[B, Hkv, k + w]", 3));
  SPARSEK_GET(tau, c.get(getTau(), "tau", "[B, Hkv]", 2));
  SPARSEK_GET(cnt, c.get(getPoolCount(), "pool_count", "[B, Hkv]", 2));
  SPARSEK_GET(pos, c.get(getPositions(), "positions", "[B]", 1));
  SPARSEK_GET(out, c.get(getInit(), "init", "[B, Hq, Dv]", 3));
  if (failed(verifyQKV(c, q, key, value, out, /*tDim=*/0, /*qHeadDim=*/2)))
    return failure();
  if (failed(c.staticDim(key, 2, "slots",
                         getKAttr().getInt() + getWAttr().getInt(), "k + w")))
    return failure();
  if (failed(c.f32(sc)) || failed(c.f32(tau)) || failed(c.integer(cnt, 32)) ||
      failed(c.integer(pos, 64)))
    return failure();
  return c.sameDims({{&q, 0, &key, 0, "B"},
                     {&key, 2, &value, 2, "slots"},
                     {&key, 0, &sc, 0, "B"},
                     {&key, 1, &sc, 1, "Hkv"},
                     {&key, 2, &sc, 2, "slots"},
                     {&key, 0, &tau, 0, "B"},
                     {&key, 1, &tau, 1, "Hkv"},
                     {&key, 0, &cnt, 0, "B"},
                     {&key, 1, &cnt, 1, "Hkv"},
                     {&key, 0, &pos, 0, "B"}});
}

//===----------------------------------------------------------------------===//
// Gradient ops
//===----------------------------------------------------------------------===//

/// Sets the names of the results of a gradient op in tensor form.
static void setResultNames(Operation *op, OpAsmSetValueNameFn setNameFn,
                           ArrayRef<StringRef> names) {
  if (op->getNumResults() != names.size())
    return;
  for (auto [result, name] : llvm::zip(op->getResults(), names))
    setNameFn(result, name);
}

/// The f32 gradients of q, key and value have the shapes of their primals.
static LogicalResult verifyQKVGrads(OperandChecker &c, const NamedOperand &q,
                                    const NamedOperand &key,
                                    const NamedOperand &value,
                                    const NamedOperand &dq,
                                    const NamedOperand &dkey,
                                    const NamedOperand &dvalue) {
  if (failed(c.f32(dq)) || failed(c.f32(dkey)) || failed(c.f32(dvalue)))
    return failure();
  for (unsigned d = 0; d < 4; ++d) {
    static const char *qNames[] = {"B", "Hq", "T", "D"};
    static const char *kNames[] = {"B", "Hkv", "S", "D"};
    static const char *vNames[] = {"B", "Hkv", "S", "Dv"};
    if (failed(c.sameDims({{&q, d, &dq, d, qNames[d]},
                           {&key, d, &dkey, d, kNames[d]},
                           {&value, d, &dvalue, d, vNames[d]}})))
      return failure();
  }
  return success();
}

MutableOperandRange AttentionGradOp::getDpsInitsMutable() {
  return trailingInits(*this, 4);
}

void AttentionGradOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  setResultNames(*this, setNameFn, {"dq", "dkey", "dvalue", "dgates"});
}

LogicalResult AttentionGradOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  SPARSEK_GET(q, c.get(getQuery(), "query", "[B, Hq, T, D]", 4));
  SPARSEK_GET(key, c.get(getKey(), "key", "[B, Hkv, S, D]", 4));
  SPARSEK_GET(value, c.get(getValue(), "value", "[B, Hkv, S, Dv]", 4));
  SPARSEK_GET(idx, c.get(getIndices(), "indices", "[B, Hkv, T, K]", 4));
  SPARSEK_GET(g, c.get(getGates(), "gates", "[B, Hkv, T, K]", 4));
  SPARSEK_GET(dout, c.get(getGradOutput(), "grad_output", "[B, Hq, T, Dv]", 4));
  SPARSEK_GET(dq,
              c.get(getGradQueryInit(), "grad_query_init", "[B, Hq, T, D]", 4));
  SPARSEK_GET(dkey,
              c.get(getGradKeyInit(), "grad_key_init", "[B, Hkv, S, D]", 4));
  SPARSEK_GET(dvalue, c.get(getGradValueInit(), "grad_value_init",
                            "[B, Hkv, S, Dv]", 4));
  SPARSEK_GET(
      dg, c.get(getGradGatesInit(), "grad_gates_init", "[B, Hkv, T, K]", 4));
  int64_t k = idx.dim(3);
  if (failed(c.budget(ShapedType::isDynamic(k) ? 1 : k, getWAttr().getInt(),
                      !ShapedType::isDynamic(k))) ||
      failed(c.scale(getScale())))
    return failure();
  if (failed(verifyQKV(c, q, key, value, dout, 2, 3)) ||
      failed(verifyQKVGrads(c, q, key, value, dq, dkey, dvalue)))
    return failure();
  if (failed(c.integer(idx, 0)) || failed(c.f32(g)) || failed(c.f32(dg)))
    return failure();
  for (unsigned d = 0; d < 4; ++d) {
    static const char *names[] = {"B", "Hkv", "T", "K"};
    if (failed(c.sameDims(
            {{&idx, d, &g, d, names[d]}, {&idx, d, &dg, d, names[d]}})))
      return failure();
  }
  if (failed(c.sameDims({{&key, 0, &idx, 0, "B"},
                         {&key, 1, &idx, 1, "Hkv"},
                         {&q, 2, &idx, 2, "T"}})))
    return failure();
  return c.queriesFitKeys(q, 2, key, 2);
}

MutableOperandRange SelectGradOp::getDpsInitsMutable() {
  return getInitMutable();
}

LogicalResult SelectGradOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  SPARSEK_GET(u, c.get(getScores(), "scores", "[B, Hkv, S]", 3));
  SPARSEK_GET(idx, c.get(getIndices(), "indices", "[B, Hkv, T, K]", 4));
  SPARSEK_GET(tau, c.get(getTau(), "tau", "[B, Hkv, T]", 3));
  SPARSEK_GET(dg, c.get(getGradGates(), "grad_gates", "[B, Hkv, T, K]", 4));
  SPARSEK_GET(du, c.get(getInit(), "init", "[B, Hkv, S]", 3));
  int64_t k = idx.dim(3);
  if (failed(c.budget(ShapedType::isDynamic(k) ? 1 : k, getWAttr().getInt(),
                      !ShapedType::isDynamic(k))))
    return failure();
  if (failed(c.f32(u)) || failed(c.integer(idx, 0)) || failed(c.f32(tau)) ||
      failed(c.f32(dg)) || failed(c.f32(du)))
    return failure();
  if (failed(c.sameDims({{&u, 0, &idx, 0, "B"},
                         {&u, 1, &idx, 1, "Hkv"},
                         {&idx, 0, &dg, 0, "B"},
                         {&idx, 1, &dg, 1, "Hkv"},
                         {&idx, 2, &dg, 2, "T"},
                         {&idx, 3, &dg, 3, "K"},
                         {&u, 0, &tau, 0, "B"},
                         {&u, 1, &tau, 1, "Hkv"},
                         {&idx, 2, &tau, 2, "T"},
                         {&u, 0, &du, 0, "B"},
                         {&u, 1, &du, 1, "Hkv"},
                         {&u, 2, &du, 2, "S"}})))
    return failure();
  return c.queriesFitKeys(tau, 2, u, 2);
}

MutableOperandRange SelectAttentionGradOp::getDpsInitsMutable() {
  return trailingInits(*this, 4);
}

void SelectAttentionGradOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  setResultNames(*this, setNameFn, {"dq", "dkey", "dvalue", "dscores"});
}

LogicalResult SelectAttentionGradOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  if (failed(c.budget(getKAttr().getInt(), getWAttr().getInt())) ||
      failed(c.scale(getScale())))
    return failure();
  SPARSEK_GET(q, c.get(getQuery(), "query", "[B, Hq, T, D]", 4));
  SPARSEK_GET(key, c.get(getKey(), "key", "[B, Hkv, S, D]", 4));
  SPARSEK_GET(value, c.get(getValue(), "value", "[B, Hkv, S, Dv]", 4));
  SPARSEK_GET(u, c.get(getScores(), "scores", "[B, Hkv, S]", 3));
  SPARSEK_GET(dout, c.get(getGradOutput(), "grad_output", "[B, Hq, T, Dv]", 4));
  SPARSEK_GET(dq,
              c.get(getGradQueryInit(), "grad_query_init", "[B, Hq, T, D]", 4));
  SPARSEK_GET(dkey,
              c.get(getGradKeyInit(), "grad_key_init", "[B, Hkv, S, D]", 4));
  SPARSEK_GET(dvalue, c.get(getGradValueInit(), "grad_value_init",
                            "[B, Hkv, S, Dv]", 4));
  SPARSEK_GET(du,
              c.get(getGradScoresInit(), "grad_scores_init", "[B, Hkv, S]", 3));
  if (failed(verifyQKV(c, q, key, value, dout, 2, 3)) ||
      failed(verifyQKVGrads(c, q, key, value, dq, dkey, dvalue)) ||
      failed(c.f32(u)) || failed(c.f32(du)))
    return failure();
  if (failed(c.sameDims({{&key, 0, &u, 0, "B"},
                         {&key, 1, &u, 1, "Hkv"},
                         {&key, 2, &u, 2, "S"},
                         {&u, 0, &du, 0, "B"},
                         {&u, 1, &du, 1, "Hkv"},
                         {&u, 2, &du, 2, "S"}})))
    return failure();
  return c.queriesFitKeys(q, 2, key, 2);
}

MutableOperandRange ScoreGradOp::getDpsInitsMutable() {
  return trailingInits(*this, 4);
}

void ScoreGradOp::getAsmResultNames(OpAsmSetValueNameFn setNameFn) {
  setResultNames(*this, setNameFn, {"dinput", "dweight", "dbias", "dslope"});
}

LogicalResult ScoreGradOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  SPARSEK_GET(x, c.get(getInput(), "input", "[B, T, C]", 3));
  SPARSEK_GET(wsc, c.get(getWeight(), "weight", "[Hkv, C]", 2));
  SPARSEK_GET(du, c.get(getGradScores(), "grad_scores", "[B, Hkv, T]", 3));
  SPARSEK_GET(dx, c.get(getGradInputInit(), "grad_input_init", "[B, T, C]", 3));
  SPARSEK_GET(dw,
              c.get(getGradWeightInit(), "grad_weight_init", "[Hkv, C]", 2));
  SPARSEK_GET(db, c.get(getGradBiasInit(), "grad_bias_init", "[Hkv]", 1));
  SPARSEK_GET(ds, c.get(getGradSlopeInit(), "grad_slope_init", "[Hkv]", 1));
  if (failed(c.floatData(x)) || failed(c.sameElementType(x, wsc)) ||
      failed(c.f32(du)) || failed(c.f32(dx)) || failed(c.f32(dw)) ||
      failed(c.f32(db)) || failed(c.f32(ds)))
    return failure();
  return c.sameDims({{&x, 0, &du, 0, "B"},
                     {&x, 1, &du, 2, "T"},
                     {&x, 2, &wsc, 1, "C"},
                     {&wsc, 0, &du, 1, "Hkv"},
                     {&x, 0, &dx, 0, "B"},
                     {&x, 1, &dx, 1, "T"},
                     {&x, 2, &dx, 2, "C"},
                     {&wsc, 0, &dw, 0, "Hkv"},
                     {&wsc, 1, &dw, 1, "C"},
                     {&wsc, 0, &db, 0, "Hkv"},
                     {&wsc, 0, &ds, 0, "Hkv"}});
}

MutableOperandRange MaskGradOp::getDpsInitsMutable() {
  return getInitMutable();
}

LogicalResult MaskGradOp::verify() {
  if (failed(verifyOneForm(*this)))
    return failure();
  OperandChecker c(*this);
  auto zType = cast<ShapedType>(getInput().getType());
  if (zType.getRank() < 1)
    return emitOpError() << "'input' must have rank >= 1 (rows on the last "
                            "axis), got "
                         << zType;
  int64_t rank = zType.getRank();
  SPARSEK_GET(z, c.get(getInput(), "input", "[..., N]", rank));
  SPARSEK_GET(tau, c.get(getTau(), "tau", "[...]", rank - 1));
  SPARSEK_GET(dp, c.get(getGradMask(), "grad_mask", "[..., N]", rank));
  SPARSEK_GET(dz, c.get(getInit(), "init", "[..., N]", rank));
  if (failed(c.f32(z)) || failed(c.f32(tau)) || failed(c.f32(dp)) ||
      failed(c.f32(dz)))
    return failure();
  for (unsigned d = 0; d < rank; ++d) {
    std::string sym = d + 1 == rank ? "N" : "batch " + std::to_string(d);
    if (failed(c.sameDim(z, d, dp, d, sym)) ||
        failed(c.sameDim(z, d, dz, d, sym)))
      return failure();
    if (d + 1 < rank && failed(c.sameDim(z, d, tau, d, sym)))
      return failure();
  }
  return success();
}

#define GET_OP_CLASSES
#include "sparsek/Dialect/SparseK/IR/SparseKOps.cpp.inc"
