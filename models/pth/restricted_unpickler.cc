// The restricted pickle machine of models/pth/restricted_unpickler.h. Opcode semantics follow the
// pickle protocol's documentation (Lib/pickletools.py describes every opcode and its argument);
// only the subset listed in Run() exists here. Every read is bounds-checked against the input,
// every length is checked before it becomes an allocation, and no value can refer to a function.
#include "models/pth/restricted_unpickler.h"

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace qlab::pth {
namespace {

constexpr const char* kAllowedGlobals[] = {
    "collections.OrderedDict",      "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter", "torch.FloatStorage",
    "torch.HalfStorage",            "torch.BFloat16Storage",
    "torch.DoubleStorage",          "torch.LongStorage",
    "torch.IntStorage",             "torch.ShortStorage",
    "torch.CharStorage",            "torch.ByteStorage",
    "torch.BoolStorage",
};

// Names of the standard opcodes this machine refuses, so the error says what the file wanted.
absl::string_view OpcodeName(uint8_t op) {
  switch (op) {
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'F': return "FLOAT";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 'P': return "PERSID";
    case 'g': return "GET";
    case 'p': return "PUT";
    case '2': return "DUP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case 'd': return "DICT";
    case 'l': return "LIST";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x8b: return "LONG4";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return "unknown";
  }
}

class Machine {
 public:
  Machine(absl::string_view bytes, absl::string_view name) : in_(bytes), name_(name) {}

  absl::StatusOr<Unpickled> Run();

 private:
  // --- input ---
  absl::Status Truncated(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat(name_, ": pickle truncated at offset ", pos_,
                                            " reading ", what));
  }
  absl::Status Malformed(absl::string_view what) const {
    return absl::DataLossError(absl::StrCat(name_, ": malformed pickle at offset ", op_pos_,
                                            ": ", what));
  }
  absl::StatusOr<absl::string_view> Take(uint64_t n, absl::string_view what) {
    if (n > in_.size() - pos_) return Truncated(what);
    absl::string_view out = in_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  // Little-endian unsigned integer of `n` bytes.
  absl::StatusOr<uint64_t> TakeLE(int n, absl::string_view what) {
    absl::StatusOr<absl::string_view> raw = Take(n, what);
    if (!raw.ok()) return raw.status();
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>((*raw)[i]);
    return v;
  }
  absl::StatusOr<absl::string_view> TakeLine(absl::string_view what) {
    const size_t end = in_.find('\n', pos_);
    if (end == absl::string_view::npos) return Truncated(what);
    absl::string_view line = in_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return line;
  }

  // --- values ---
  int New(PyObject object) {
    objects_.push_back(std::move(object));
    return static_cast<int>(objects_.size()) - 1;
  }
  int NewInt(int64_t v) {
    PyObject o;
    o.kind = PyKind::kInt;
    o.integer = v;
    return New(std::move(o));
  }
  absl::StatusOr<int> Pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      return Malformed("stack underflow");
    }
    const int top = stack_.back();
    stack_.pop_back();
    return top;
  }
  // The items above the last MARK, removed from the stack.
  absl::StatusOr<std::vector<int>> PopToMark() {
    if (marks_.empty()) return Malformed("no MARK");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<int> items(stack_.begin() + mark, stack_.end());
    stack_.resize(mark);
    return items;
  }
  absl::StatusOr<int> Top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) {
      return Malformed("empty stack");
    }
    return stack_.back();
  }
  absl::Status SetItems(int dict, const std::vector<int>& kv);
  absl::Status Global(absl::string_view module, absl::string_view qualname);
  absl::Status Reduce(int callable, int args);
  absl::Status PersistentLoad(int pid);
  absl::StatusOr<std::vector<int64_t>> IntTuple(int id, absl::string_view what);

  absl::string_view in_;
  std::string name_;
  size_t pos_ = 0, op_pos_ = 0;
  std::vector<PyObject> objects_;
  std::vector<int> stack_;
  std::vector<size_t> marks_;
  absl::flat_hash_map<uint64_t, int> memo_;
};

absl::Status Machine::SetItems(int dict, const std::vector<int>& kv) {
  if (objects_[dict].kind != PyKind::kDict) {
    return Malformed(absl::StrCat("SETITEM(S) on a ", PyKindName(objects_[dict].kind)));
  }
  if (kv.size() % 2 != 0) return Malformed("odd number of items for SETITEMS");
  for (size_t i = 0; i < kv.size(); i += 2) {
    objects_[dict].entries.push_back({kv[i], kv[i + 1]});
  }
  return absl::OkStatus();
}

absl::Status Machine::Global(absl::string_view module, absl::string_view qualname) {
  const std::string qualified = absl::StrCat(module, ".", qualname);
  if (!IsAllowedGlobal(qualified)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name_, ": pickle global '", qualified, "' at offset ", op_pos_,
        " is not allowed: only a tensor state_dict can be loaded (allowed: ",
        absl::StrJoin(kAllowedGlobals, ", "), ")"));
  }
  PyObject o;
  o.kind = PyKind::kGlobal;
  o.text = qualified;
  stack_.push_back(New(std::move(o)));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> Machine::IntTuple(int id, absl::string_view what) {
  const PyObject& o = objects_[id];
  if (o.kind != PyKind::kTuple) {
    return Malformed(absl::StrCat(what, " is a ", PyKindName(o.kind), ", not a tuple"));
  }
  std::vector<int64_t> values;
  for (int item : o.items) {
    if (objects_[item].kind != PyKind::kInt) {
      return Malformed(absl::StrCat(what, " holds a ", PyKindName(objects_[item].kind)));
    }
    values.push_back(objects_[item].integer);
  }
  return values;
}

absl::Status Machine::Reduce(int callable, int args_id) {
  const PyObject& f = objects_[callable];
  if (f.kind != PyKind::kGlobal) {
    return Malformed(absl::StrCat("REDUCE calls a ", PyKindName(f.kind)));
  }
  if (objects_[args_id].kind != PyKind::kTuple) return Malformed("REDUCE arguments not a tuple");
  const std::vector<int> args = objects_[args_id].items;
  if (f.text == "collections.OrderedDict") {
    if (!args.empty()) return Malformed("OrderedDict(...) with arguments");
    PyObject dict;
    dict.kind = PyKind::kDict;
    stack_.push_back(New(std::move(dict)));
    return absl::OkStatus();
  }
  if (f.text == "torch._utils._rebuild_tensor_v2") {
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (args.size() != 6 && args.size() != 7) {
      return Malformed(absl::StrCat("_rebuild_tensor_v2 with ", args.size(), " arguments"));
    }
    if (objects_[args[0]].kind != PyKind::kStorage || objects_[args[1]].kind != PyKind::kInt) {
      return Malformed("_rebuild_tensor_v2 needs (storage, int offset, ...)");
    }
    PyObject t;
    t.kind = PyKind::kTensor;
    t.tensor.storage = args[0];
    t.tensor.storage_offset = objects_[args[1]].integer;
    absl::StatusOr<std::vector<int64_t>> sizes = IntTuple(args[2], "tensor size");
    if (!sizes.ok()) return sizes.status();
    absl::StatusOr<std::vector<int64_t>> strides = IntTuple(args[3], "tensor stride");
    if (!strides.ok()) return strides.status();
    t.tensor.sizes = *std::move(sizes);
    t.tensor.strides = *std::move(strides);
    stack_.push_back(New(std::move(t)));
    return absl::OkStatus();
  }
  if (f.text == "torch._utils._rebuild_parameter") {
    // (data, requires_grad, backward_hooks): the parameter is its tensor.
    if (args.size() != 3 || objects_[args[0]].kind != PyKind::kTensor) {
      return Malformed("_rebuild_parameter needs (tensor, requires_grad, hooks)");
    }
    stack_.push_back(args[0]);
    return absl::OkStatus();
  }
  // A storage type is allowed as a name inside persistent ids, never as a call.
  return absl::InvalidArgumentError(absl::StrCat(name_, ": pickle calls '", f.text,
                                                 "' at offset ", op_pos_,
                                                 ", which is not a tensor constructor"));
}

absl::Status Machine::PersistentLoad(int pid) {
  // ('storage', torch.<Type>Storage, key, location, numel)
  const PyObject& t = objects_[pid];
  if (t.kind != PyKind::kTuple || t.items.size() != 5) {
    return Malformed("persistent id is not a 5-tuple ('storage', type, key, location, numel)");
  }
  const PyObject& tag = objects_[t.items[0]];
  const PyObject& type = objects_[t.items[1]];
  const PyObject& key = objects_[t.items[2]];
  const PyObject& location = objects_[t.items[3]];
  const PyObject& numel = objects_[t.items[4]];
  if (tag.kind != PyKind::kString || tag.text != "storage" || type.kind != PyKind::kGlobal ||
      !absl::StartsWith(type.text, "torch.") || !absl::EndsWith(type.text, "Storage") ||
      key.kind != PyKind::kString || location.kind != PyKind::kString ||
      numel.kind != PyKind::kInt || numel.integer < 0) {
    return Malformed("persistent id is not ('storage', torch.<Type>Storage, key, location, numel)");
  }
  PyObject s;
  s.kind = PyKind::kStorage;
  s.storage.type = type.text.substr(6);
  s.storage.key = key.text;
  s.storage.location = location.text;
  s.storage.numel = numel.integer;
  stack_.push_back(New(std::move(s)));
  return absl::OkStatus();
}

absl::StatusOr<Unpickled> Machine::Run() {
#define QLAB_PICKLE_TRY(expr)                 \
  do {                                        \
    absl::Status qlab_pickle_status = (expr); \
    if (!qlab_pickle_status.ok()) return qlab_pickle_status; \
  } while (false)
#define QLAB_PICKLE_ASSIGN(lhs, expr)         \
  auto lhs##_or = (expr);                     \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *std::move(lhs##_or)

  for (;;) {
    op_pos_ = pos_;
    if (pos_ >= in_.size()) return Truncated("an opcode (no STOP)");
    const uint8_t op = static_cast<uint8_t>(in_[pos_++]);
    switch (op) {
      case 0x80: {  // PROTO <u8>
        QLAB_PICKLE_ASSIGN(version, TakeLE(1, "PROTO"));
        if (version > 5) return Malformed(absl::StrCat("pickle protocol ", version));
        break;
      }
      case 0x95: {  // FRAME <u64 length>: framing only, the opcodes follow inline
        QLAB_PICKLE_ASSIGN(length, TakeLE(8, "FRAME"));
        (void)length;
        break;
      }
      case '.': {  // STOP
        QLAB_PICKLE_ASSIGN(root, Pop());
        if (!stack_.empty() || !marks_.empty()) return Malformed("values left on the stack at STOP");
        Unpickled result;
        result.objects = std::move(objects_);
        result.root = root;
        return result;
      }
      case '(':  // MARK
        marks_.push_back(stack_.size());
        break;
      case 'N':
        stack_.push_back(New(PyObject{}));
        break;
      case 0x88:  // NEWTRUE
      case 0x89: {  // NEWFALSE
        PyObject o;
        o.kind = PyKind::kBool;
        o.boolean = op == 0x88;
        stack_.push_back(New(std::move(o)));
        break;
      }
      case 'J': {  // BININT <i32>
        QLAB_PICKLE_ASSIGN(v, TakeLE(4, "BININT"));
        stack_.push_back(NewInt(static_cast<int32_t>(static_cast<uint32_t>(v))));
        break;
      }
      case 'K': {  // BININT1 <u8>
        QLAB_PICKLE_ASSIGN(v, TakeLE(1, "BININT1"));
        stack_.push_back(NewInt(static_cast<int64_t>(v)));
        break;
      }
      case 'M': {  // BININT2 <u16>
        QLAB_PICKLE_ASSIGN(v, TakeLE(2, "BININT2"));
        stack_.push_back(NewInt(static_cast<int64_t>(v)));
        break;
      }
      case 0x8a: {  // LONG1 <u8 n> <n bytes two's complement, little-endian>
        QLAB_PICKLE_ASSIGN(n, TakeLE(1, "LONG1 length"));
        if (n > 8) {
          return absl::OutOfRangeError(absl::StrCat(name_, ": pickle integer of ", n,
                                                    " bytes at offset ", op_pos_,
                                                    " does not fit in 64 bits"));
        }
        QLAB_PICKLE_ASSIGN(raw, TakeLE(static_cast<int>(n), "LONG1"));
        int64_t v = static_cast<int64_t>(raw);
        if (n > 0 && n < 8 && (raw >> (8 * n - 1)) & 1) v -= int64_t{1} << (8 * n - 1) << 1;
        stack_.push_back(NewInt(v));
        break;
      }
      case 'G': {  // BINFLOAT <f64 big-endian>
        QLAB_PICKLE_ASSIGN(raw, Take(8, "BINFLOAT"));
        uint64_t bits = 0;
        for (char c : raw) bits = (bits << 8) | static_cast<uint8_t>(c);
        PyObject o;
        o.kind = PyKind::kFloat;
        std::memcpy(&o.real, &bits, sizeof(bits));
        stack_.push_back(New(std::move(o)));
        break;
      }
      case 'X':     // BINUNICODE <u32 length> <utf-8>
      case 0x8c:    // SHORT_BINUNICODE <u8 length>
      case 0x8d: {  // BINUNICODE8 <u64 length>
        const int width = op == 'X' ? 4 : (op == 0x8c ? 1 : 8);
        QLAB_PICKLE_ASSIGN(length, TakeLE(width, "string length"));
        QLAB_PICKLE_ASSIGN(text, Take(length, "string"));  // bounded by the input size
        PyObject o;
        o.kind = PyKind::kString;
        o.text = std::string(text);
        stack_.push_back(New(std::move(o)));
        break;
      }
      case ')': {  // EMPTY_TUPLE
        PyObject o;
        o.kind = PyKind::kTuple;
        stack_.push_back(New(std::move(o)));
        break;
      }
      case 't': {  // TUPLE
        QLAB_PICKLE_ASSIGN(items, PopToMark());
        PyObject o;
        o.kind = PyKind::kTuple;
        o.items = std::move(items);
        stack_.push_back(New(std::move(o)));
        break;
      }
      case 0x85:
      case 0x86:
      case 0x87: {  // TUPLE1..3
        const int n = op - 0x84;
        PyObject o;
        o.kind = PyKind::kTuple;
        o.items.resize(n);
        for (int i = n - 1; i >= 0; --i) {
          QLAB_PICKLE_ASSIGN(item, Pop());
          o.items[i] = item;
        }
        stack_.push_back(New(std::move(o)));
        break;
      }
      case ']':     // EMPTY_LIST
      case '}': {   // EMPTY_DICT
        PyObject o;
        o.kind = op == ']' ? PyKind::kList : PyKind::kDict;
        stack_.push_back(New(std::move(o)));
        break;
      }
      case 'a': {  // APPEND
        QLAB_PICKLE_ASSIGN(item, Pop());
        QLAB_PICKLE_ASSIGN(list, Top());
        if (objects_[list].kind != PyKind::kList) return Malformed("APPEND to a non-list");
        objects_[list].items.push_back(item);
        break;
      }
      case 'e': {  // APPENDS
        QLAB_PICKLE_ASSIGN(items, PopToMark());
        QLAB_PICKLE_ASSIGN(list, Top());
        if (objects_[list].kind != PyKind::kList) return Malformed("APPENDS to a non-list");
        objects_[list].items.insert(objects_[list].items.end(), items.begin(), items.end());
        break;
      }
      case 's': {  // SETITEM
        QLAB_PICKLE_ASSIGN(value, Pop());
        QLAB_PICKLE_ASSIGN(key, Pop());
        QLAB_PICKLE_ASSIGN(dict, Top());
        QLAB_PICKLE_TRY(SetItems(dict, {key, value}));
        break;
      }
      case 'u': {  // SETITEMS
        QLAB_PICKLE_ASSIGN(kv, PopToMark());
        QLAB_PICKLE_ASSIGN(dict, Top());
        QLAB_PICKLE_TRY(SetItems(dict, kv));
        break;
      }
      case 'c': {  // GLOBAL "<module>\n<name>\n"
        QLAB_PICKLE_ASSIGN(module, TakeLine("GLOBAL module"));
        QLAB_PICKLE_ASSIGN(qualname, TakeLine("GLOBAL name"));
        QLAB_PICKLE_TRY(Global(module, qualname));
        break;
      }
      case 0x93: {  // STACK_GLOBAL: module and name strings from the stack
        QLAB_PICKLE_ASSIGN(qualname, Pop());
        QLAB_PICKLE_ASSIGN(module, Pop());
        if (objects_[module].kind != PyKind::kString ||
            objects_[qualname].kind != PyKind::kString) {
          return Malformed("STACK_GLOBAL needs two strings");
        }
        QLAB_PICKLE_TRY(Global(objects_[module].text, objects_[qualname].text));
        break;
      }
      case 'R': {  // REDUCE
        QLAB_PICKLE_ASSIGN(args, Pop());
        QLAB_PICKLE_ASSIGN(callable, Pop());
        QLAB_PICKLE_TRY(Reduce(callable, args));
        break;
      }
      case 'b': {  // BUILD: set state on an object
        QLAB_PICKLE_ASSIGN(state, Pop());
        QLAB_PICKLE_ASSIGN(target, Top());
        // torch.save's OrderedDict carries its `_metadata` (module versions) as BUILD state; it
        // does not change the tensors, so it is dropped. Nothing else may be built.
        if (objects_[target].kind != PyKind::kDict) {
          return Malformed(absl::StrCat("BUILD on a ", PyKindName(objects_[target].kind)));
        }
        (void)state;
        break;
      }
      case 'Q': {  // BINPERSID
        QLAB_PICKLE_ASSIGN(pid, Pop());
        QLAB_PICKLE_TRY(PersistentLoad(pid));
        break;
      }
      case 'q':     // BINPUT <u8>
      case 'r':     // LONG_BINPUT <u32>
      case 0x94: {  // MEMOIZE: next index
        uint64_t index = memo_.size();
        if (op != 0x94) {
          QLAB_PICKLE_ASSIGN(i, TakeLE(op == 'q' ? 1 : 4, "memo index"));
          index = i;
        }
        QLAB_PICKLE_ASSIGN(top, Top());
        memo_[index] = top;
        break;
      }
      case 'h':     // BINGET <u8>
      case 'j': {   // LONG_BINGET <u32>
        QLAB_PICKLE_ASSIGN(index, TakeLE(op == 'h' ? 1 : 4, "memo index"));
        auto it = memo_.find(index);
        if (it == memo_.end()) return Malformed(absl::StrCat("memo ", index, " was never set"));
        stack_.push_back(it->second);
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrFormat(
            "%s: pickle opcode 0x%02x (%s) at offset %d is not supported by the restricted "
            "unpickler (only what torch.save writes for a tensor state_dict)",
            name_, op, OpcodeName(op), op_pos_));
    }
  }
#undef QLAB_PICKLE_TRY
#undef QLAB_PICKLE_ASSIGN
}

}  // namespace

absl::string_view PyKindName(PyKind kind) {
  switch (kind) {
    case PyKind::kNone: return "none";
    case PyKind::kBool: return "bool";
    case PyKind::kInt: return "int";
    case PyKind::kFloat: return "float";
    case PyKind::kString: return "string";
    case PyKind::kTuple: return "tuple";
    case PyKind::kList: return "list";
    case PyKind::kDict: return "dict";
    case PyKind::kGlobal: return "global";
    case PyKind::kStorage: return "storage";
    case PyKind::kTensor: return "tensor";
  }
  return "?";
}

bool IsAllowedGlobal(absl::string_view qualified_name) {
  for (const char* allowed : kAllowedGlobals) {
    if (qualified_name == allowed) return true;
  }
  return false;
}

absl::StatusOr<Unpickled> RestrictedUnpickle(absl::string_view bytes, absl::string_view name) {
  return Machine(bytes, name).Run();
}

}  // namespace qlab::pth
