// lrts._lrts: the Python package's native half. It wraps the C++ client (ClientApplication),
// encodes services and results, runs a Python slot process's slot runtime, and gives Python
// services their progress bars in the slot's shared memory.
//
// DESIGN
// - Services travel as the service `lrts.python` with fields {"name": service_name(),
//   "pickle": bin}; the scheduler sees only bytes. A result that is None, a bool, an int of 64
//   bits, a float, a str or bytes travels as that MessagePack value (so `lrts results` shows
//   it as JSON); anything else is pickled into the MessagePack extension type 80.
// - Every wait releases the GIL and waits in slices of kSliceMs, checking for signals between
//   them: Ctrl-C raises KeyboardInterrupt in the waiting thread within a slice.
// - Progress inside a task: bars live in the slot's shared memory (lrts/progress.hpp). The two
//   calls a tight loop makes, Service.increment_progress and ProgressBar.advance, are plain
//   CPython vectorcall functions (no pybind11 dispatch): an add into shared memory and a
//   generation check that makes a bar kept past its task count nowhere.
#include <Python.h>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "lrts/admin.hpp"
#include "lrts/client.hpp"
#include "lrts/progress.hpp"
#include "lrts/service.hpp"
#include "worker/slot_runtime.hpp"

namespace py = pybind11;

namespace {

constexpr int64_t kSliceMs = 50;
constexpr int8_t kPickleExt = 80;
constexpr const char* kPythonService = "lrts.python";

// ---- MessagePack <-> Python ----------------------------------------------------------------

py::object& pickle_module() {
  static py::object* m = new py::object(py::module_::import("pickle"));
  return *m;
}

struct Packer {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk{buf};
  // Always a float 64: msgpack-c's pack_double writes a whole number as an integer, and 1.0
  // must come back a float.
  void float64(double v) {
    uint64_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    char b[9];
    b[0] = static_cast<char>(0xcb);
    for (int i = 0; i < 8; ++i) b[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
    buf.write(b, sizeof b);
  }
};

void pack_pickled(Packer& p, const py::handle& obj) {
  py::bytes blob;
  try {
    blob = pickle_module().attr("dumps")(obj, 5);
  } catch (py::error_already_set&) {
    // Lambdas, local classes: by value.
    try {
      blob = py::module_::import("cloudpickle").attr("dumps")(obj, 5);
    } catch (py::error_already_set& e) {
      throw std::runtime_error(std::string("the result of run cannot be pickled (") +
                               py::str(e.type().attr("__name__")).cast<std::string>() + ": " +
                               py::str(e.value()).cast<std::string>() + ")");
    }
  }
  char* data;
  Py_ssize_t size;
  PyBytes_AsStringAndSize(blob.ptr(), &data, &size);
  p.pk.pack_ext(static_cast<size_t>(size), kPickleExt);
  p.pk.pack_ext_body(data, static_cast<size_t>(size));
}

// A result: exact scalars as themselves, the rest pickled (types survive the trip).
void pack_result(Packer& p, const py::handle& obj) {
  PyObject* o = obj.ptr();
  if (o == Py_None) {
    p.pk.pack_nil();
    return;
  }
  if (PyBool_Check(o)) {
    o == Py_True ? p.pk.pack_true() : p.pk.pack_false();
    return;
  }
  if (PyLong_CheckExact(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (!overflow) {
      p.pk.pack_int64(v);
      return;
    }
    PyErr_Clear();
    return pack_pickled(p, obj);
  }
  if (PyFloat_CheckExact(o)) {
    p.float64(PyFloat_AS_DOUBLE(o));
    return;
  }
  if (PyUnicode_CheckExact(o)) {
    Py_ssize_t size;
    const char* s = PyUnicode_AsUTF8AndSize(o, &size);
    if (!s) {  // lone surrogates (file names from os.listdir): not UTF-8, so pickled
      PyErr_Clear();
      return pack_pickled(p, obj);
    }
    p.pk.pack_str(static_cast<uint32_t>(size));
    {
      p.pk.pack_str_body(s, static_cast<uint32_t>(size));
      return;
    }
  }
  if (PyBytes_CheckExact(o)) {
    const auto size = static_cast<uint32_t>(PyBytes_GET_SIZE(o));
    p.pk.pack_bin(size);
    {
      p.pk.pack_bin_body(PyBytes_AS_STRING(o), size);
      return;
    }
  }
  pack_pickled(p, obj);
}

// Fields of a C++ service, from a dict: plain values only (what a C++ struct can take).
void pack_plain(Packer& p, const py::handle& obj, int depth) {
  if (depth > 64) throw py::value_error("fields nest deeper than 64 levels");
  PyObject* o = obj.ptr();
  if (o == Py_None) {
    p.pk.pack_nil();
    return;
  }
  if (PyBool_Check(o)) {
    o == Py_True ? p.pk.pack_true() : p.pk.pack_false();
    return;
  }
  if (PyLong_Check(o)) {
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (!overflow) {
      p.pk.pack_int64(v);
      return;
    }
    PyErr_Clear();
    const unsigned long long u = PyLong_AsUnsignedLongLong(o);
    if (PyErr_Occurred()) {
      PyErr_Clear();
      throw py::value_error("an int field does not fit in 64 bits");
    }
    {
      p.pk.pack_uint64(u);
      return;
    }
  }
  if (PyFloat_Check(o)) {
    p.float64(PyFloat_AsDouble(o));
    return;
  }
  if (PyUnicode_Check(o)) {
    Py_ssize_t size;
    const char* s = PyUnicode_AsUTF8AndSize(o, &size);
    if (!s) throw py::error_already_set();
    p.pk.pack_str(static_cast<uint32_t>(size));
    {
      p.pk.pack_str_body(s, static_cast<uint32_t>(size));
      return;
    }
  }
  if (PyBytes_Check(o) || PyByteArray_Check(o) || PyMemoryView_Check(o)) {
    py::buffer_info info = py::reinterpret_borrow<py::buffer>(obj).request();
    const auto size = static_cast<uint32_t>(info.size * info.itemsize);
    p.pk.pack_bin(size);
    {
      p.pk.pack_bin_body(static_cast<const char*>(info.ptr), size);
      return;
    }
  }
  if (PyDict_Check(o)) {
    py::dict d = py::reinterpret_borrow<py::dict>(obj);
    p.pk.pack_map(static_cast<uint32_t>(d.size()));
    for (auto item : d) {
      if (!PyUnicode_Check(item.first.ptr())) throw py::type_error("field names must be str");
      pack_plain(p, item.first, depth + 1);
      pack_plain(p, item.second, depth + 1);
    }
    return;
  }
  if (PyList_Check(o) || PyTuple_Check(o)) {
    py::sequence seq = py::reinterpret_borrow<py::sequence>(obj);
    p.pk.pack_array(static_cast<uint32_t>(seq.size()));
    for (auto item : seq) pack_plain(p, item, depth + 1);
    return;
  }
  throw py::type_error(std::string("a field of a C++ service cannot hold a ") +
                       Py_TYPE(o)->tp_name +
                       " (only None, bool, int, float, str, bytes, "
                       "list, tuple and dict)");
}

py::object unpack_object(const msgpack::object& o, int depth) {
  if (depth > 256) throw py::value_error("result nests deeper than 256 levels");
  switch (o.type) {
    case msgpack::type::NIL:
      return py::none();
    case msgpack::type::BOOLEAN:
      return py::bool_(o.via.boolean);
    case msgpack::type::POSITIVE_INTEGER:
      return py::reinterpret_steal<py::object>(PyLong_FromUnsignedLongLong(o.via.u64));
    case msgpack::type::NEGATIVE_INTEGER:
      return py::reinterpret_steal<py::object>(PyLong_FromLongLong(o.via.i64));
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return py::float_(o.via.f64);
    case msgpack::type::STR:
      return py::reinterpret_steal<py::object>(
          PyUnicode_DecodeUTF8(o.via.str.ptr, o.via.str.size, "surrogateescape"));
    case msgpack::type::BIN:
      return py::bytes(o.via.bin.ptr, o.via.bin.size);
    case msgpack::type::ARRAY: {
      py::list l(o.via.array.size);
      for (uint32_t i = 0; i < o.via.array.size; ++i) {
        l[i] = unpack_object(o.via.array.ptr[i], depth + 1);
      }
      return l;
    }
    case msgpack::type::MAP: {
      py::dict d;
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        py::object k = unpack_object(o.via.map.ptr[i].key, depth + 1);
        if (PyList_Check(k.ptr()) || PyDict_Check(k.ptr())) k = py::str(py::repr(k));
        d[k] = unpack_object(o.via.map.ptr[i].val, depth + 1);
      }
      return d;
    }
    case msgpack::type::EXT:
      if (o.via.ext.type() == kPickleExt) {
        return pickle_module().attr("loads")(
            py::memoryview::from_memory(o.via.ext.data(), static_cast<ssize_t>(o.via.ext.size)));
      }
      return py::bytes(o.via.ext.data(), o.via.ext.size);
  }
  return py::none();
}

py::object decode_payload(const std::string& payload) {
  if (payload.empty()) return py::none();
  msgpack::object_handle oh = msgpack::unpack(payload.data(), payload.size());
  return unpack_object(oh.get(), 0);
}

// ---- results -------------------------------------------------------------------------------

// What Python sees of a result: the C++ ServiceResult, its value decoded when asked for.
struct PyResult {
  lrts::ServiceResult r;
  std::optional<py::object> value;  // decoded once

  py::object service_result() {
    if (!r.ok()) return py::none();
    if (!value) {
      try {
        value = decode_payload(r.payload());
      } catch (py::error_already_set& e) {
        throw lrts::ResultError("the result of service " + r.service_id() +
                                " cannot be unpickled here (" +
                                py::str(e.type().attr("__name__")).cast<std::string>() + ": " +
                                py::str(e.value()).cast<std::string>() +
                                "); does this application import what its value needs?");
      } catch (const std::exception& e) {
        throw lrts::ResultError("the result of service " + r.service_id() +
                                " cannot be decoded: " + e.what());
      }
    }
    return *value;
  }
};

// ---- waiting -------------------------------------------------------------------------------

std::chrono::milliseconds slice(const std::optional<double>& timeout_s,
                                std::chrono::steady_clock::time_point start, bool* last) {
  *last = false;
  if (!timeout_s) return std::chrono::milliseconds(kSliceMs);
  const auto deadline =
      start + std::chrono::microseconds(static_cast<int64_t>(std::max(0.0, *timeout_s) * 1e6));
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= kSliceMs) {
    *last = true;
    return std::max(left, std::chrono::milliseconds(0));
  }
  return std::chrono::milliseconds(kSliceMs);
}

void check_signals() {
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

// Calls `wait(slice)` (GIL released) until it returns, the timeout passes (TimeoutError goes
// up) or a signal handler raises.
template <class F>
auto wait_in_slices(const std::optional<double>& timeout_s, F wait) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    bool last = false;
    const auto s = slice(timeout_s, start, &last);
    try {
      py::gil_scoped_release release;
      return wait(s);
    } catch (const lrts::TimeoutError&) {
      if (last) throw;
    }
    check_signals();
  }
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// ---- the client ----------------------------------------------------------------------------

struct Completion {
  lrts::CompletionRange range;
  std::optional<double> timeout_s;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  // Up to `max` results; empty when every result was returned.
  std::vector<PyResult> next_batch(size_t max) {
    if (range.remaining() == 0) return {};
    std::optional<double> left;
    if (timeout_s) {
      left = *timeout_s -
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    auto got =
        wait_in_slices(left, [&](std::chrono::milliseconds s) { return range.next_batch(max, s); });
    std::vector<PyResult> out;
    out.reserve(got.size());
    for (auto& r : got) out.push_back(PyResult{std::move(r), std::nullopt});
    return out;
  }
};

py::dict snapshot_dict(const lrts::ProgressSnapshot& s) {
  py::dict d;
  d["service_id"] = s.service_id;
  d["attempt"] = s.attempt;
  d["bar"] = s.bar;
  d["description"] = s.description;
  d["unit"] = s.unit;
  d["count"] = s.count;
  d["total"] = s.total;
  d["closed"] = s.closed;
  d["status"] = lrts::to_string(s.status);
  d["rate"] = s.rate;
  d["eta_seconds"] = s.eta_seconds;
  d["elapsed_seconds"] = s.elapsed_seconds;
  return d;
}

// Calls a Python progress callback on a thread of its own, with the bars that changed since
// its last call (one entry per bar, the latest): a slow callback delays only itself. Its state
// is shared with the thread, so a callback that replaces itself (on_progress from inside) ends
// its own thread safely.
class ProgressRelay {
 public:
  explicit ProgressRelay(py::object callback) : state_(std::make_shared<State>()) {
    state_->callback = new py::object(std::move(callback));
    thread_ = std::thread([st = state_] { loop(*st); });
  }
  ~ProgressRelay() {  // without the GIL held by this thread
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->stop = true;
    }
    state_->cv.notify_one();
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // the callback itself let go of it: the thread ends when it returns
    } else if (thread_.joinable()) {
      thread_.join();
    }
  }
  ProgressRelay(const ProgressRelay&) = delete;
  ProgressRelay& operator=(const ProgressRelay&) = delete;

  void push(const std::vector<lrts::ProgressSnapshot>& changed) {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      for (const auto& b : changed) state_->pending[{b.service_id, b.attempt, b.bar}] = b;
    }
    state_->cv.notify_one();
  }

 private:
  using Key = std::tuple<std::string, uint32_t, uint32_t>;
  struct State {
    py::object* callback = nullptr;
    std::mutex mu;
    std::condition_variable cv;
    std::map<Key, lrts::ProgressSnapshot> pending;
    bool stop = false;
    ~State() {
      if (Py_IsInitialized() && !_Py_IsFinalizing()) {
        py::gil_scoped_acquire gil;
        delete callback;
      }
    }
  };
  static void loop(State& st) {
    for (;;) {
      std::map<Key, lrts::ProgressSnapshot> batch;
      {
        std::unique_lock<std::mutex> lock(st.mu);
        st.cv.wait(lock, [&] { return st.stop || !st.pending.empty(); });
        if (st.stop) return;
        batch.swap(st.pending);
      }
      if (!Py_IsInitialized() || _Py_IsFinalizing()) return;
      py::gil_scoped_acquire gil;
      try {
        py::list l;
        for (const auto& [key, b] : batch) l.append(snapshot_dict(b));
        (*st.callback)(l);
      } catch (py::error_already_set& e) {
        e.discard_as_unraisable("lrts on_progress callback");
      }
    }
  }

  std::shared_ptr<State> state_;
  std::thread thread_;
};

class Client {
 public:
  Client(const std::string& scheduler_address, int scheduler_port,
         const std::string& progress_address, int progress_port, const std::string& application_id,
         double disconnect_grace_s, bool collect_only, const std::string& auth_dir,
         bool track_progress, bool show_progress) {
    lrts::ApplicationInformation info;
    info.scheduler_address = scheduler_address;
    info.scheduler_port = scheduler_port;
    info.progress_server_address = progress_address;
    info.progress_server_port = progress_port;
    info.application_id = application_id;
    info.disconnect_grace = to_ms(disconnect_grace_s);
    info.collect_only = collect_only;
    info.auth_dir = auth_dir;
    info.track_progress = track_progress;
    info.show_progress = show_progress;
    app_ = std::make_unique<lrts::ClientApplication>(std::move(info));
  }
  ~Client() {
    py::gil_scoped_release release;
    app_.reset();
  }

  void start() { app_->start_application(); }
  void stop() {
    py::gil_scoped_release release;  // the progress callback may be waiting for the GIL
    app_->stop_application();
  }
  void detach() {
    py::gil_scoped_release release;
    app_->detach_application();
  }
  bool flush(std::optional<double> timeout_s) {
    try {
      return wait_in_slices(timeout_s, [&](std::chrono::milliseconds s) {
        if (!app_->flush(s)) throw lrts::TimeoutError("flush");
        return true;
      });
    } catch (const lrts::TimeoutError&) {
      return false;
    }
  }
  bool wait_connected(std::optional<double> timeout_s) {
    try {
      return wait_in_slices(timeout_s, [&](std::chrono::milliseconds s) {
        if (!app_->wait_connected(s)) throw lrts::TimeoutError("connect");
        return true;
      });
    } catch (const lrts::TimeoutError&) {
      return false;
    }
  }

  std::string schedule_python(const std::string& name, const py::bytes& pickled,
                              uint32_t max_retries, double timeout_s) {
    char* data;
    Py_ssize_t size;
    PyBytes_AsStringAndSize(pickled.ptr(), &data, &size);
    Packer p;
    p.pk.pack_map(2);
    p.pk.pack("name");
    p.pk.pack(name.size() > 256 ? name.substr(0, 256) : name);
    p.pk.pack("pickle");
    p.pk.pack_bin(static_cast<uint32_t>(size));
    p.pk.pack_bin_body(data, static_cast<uint32_t>(size));
    return schedule(kPythonService, std::string(p.buf.data(), p.buf.size()), max_retries,
                    timeout_s);
  }
  std::string schedule_native(const std::string& name, const py::dict& fields, uint32_t max_retries,
                              double timeout_s) {
    Packer p;
    pack_plain(p, fields, 0);
    return schedule(name, std::string(p.buf.data(), p.buf.size()), max_retries, timeout_s);
  }

  PyResult wait_for(const std::string& id, std::optional<double> timeout_s) {
    return PyResult{
        wait_in_slices(timeout_s,
                       [&](std::chrono::milliseconds s) { return app_->wait_for(id, s); }),
        std::nullopt};
  }
  std::vector<PyResult> wait_for_multi(const std::vector<std::string>& ids,
                                       std::optional<double> timeout_s) {
    auto got = wait_in_slices(
        timeout_s, [&](std::chrono::milliseconds s) { return app_->wait_for_multi(ids, s); });
    std::vector<PyResult> out;
    out.reserve(got.size());
    for (auto& r : got) out.push_back(PyResult{std::move(r), std::nullopt});
    return out;
  }
  std::unique_ptr<Completion> as_completed(const std::vector<std::string>& ids,
                                           std::optional<double> timeout_s) {
    return std::make_unique<Completion>(Completion{app_->as_completed(ids), timeout_s});
  }
  bool cancel(const std::string& id) { return app_->cancel(id); }

  py::list progress(const std::optional<std::string>& id) const {
    py::list out;
    std::vector<lrts::ProgressSnapshot> bars;
    {
      py::gil_scoped_release release;
      bars = id ? app_->progress(*id) : app_->progress();
    }
    for (const auto& s : bars) out.append(snapshot_dict(s));
    return out;
  }
  void on_progress(py::object callback) {
    std::shared_ptr<ProgressRelay> relay;
    if (!callback.is_none()) relay = std::make_shared<ProgressRelay>(std::move(callback));
    // The client's I/O thread only hands the changed bars over (it never waits for the GIL,
    // so heartbeats and results keep flowing whatever the callback does); the relay's thread
    // calls the callback with the bars merged since its last call.
    py::gil_scoped_release release;
    if (!relay) {
      app_->on_progress(nullptr);
      return;
    }
    app_->on_progress(
        [relay](const std::vector<lrts::ProgressSnapshot>& changed) { relay->push(changed); });
  }
  void set_stage(const std::string& stage) { app_->set_stage(stage); }
  std::string application_id() const { return app_->application_id(); }
  bool connected() const { return app_->connected(); }
  std::vector<std::string> pending_service_ids() const { return app_->pending_service_ids(); }
  std::vector<PyResult> collect_ready() {
    std::vector<PyResult> out;
    for (auto& r : app_->collect_ready()) out.push_back(PyResult{std::move(r), std::nullopt});
    return out;
  }
  size_t results_waiting() const { return app_->results_waiting(); }
  std::string failure() const { return app_->failure(); }
  std::string status_json(double timeout_s) const {
    py::gil_scoped_release release;
    return app_->status(to_ms(timeout_s)).json;
  }

 private:
  std::string schedule(const std::string& name, std::string fields, uint32_t max_retries,
                       double timeout_s) {
    lrts::TaskOptions o;
    o.max_retries = max_retries;
    o.timeout = to_ms(timeout_s);
    return app_->schedule_service(name, std::move(fields), o);
  }
  std::unique_ptr<lrts::ClientApplication> app_;
};

// ---- the slot side: Python services and their bars -----------------------------------------

// The task running in this Python slot process (the task thread holds the GIL while it runs).
struct Running {
  lrts::TaskContext* ctx = nullptr;
  std::vector<lrts::ProgressBar> bars;  // by progress id
  uint64_t generation = 1;              // bumped as each task ends: old bars count nowhere
};
Running g_running;
py::object* g_runner = nullptr;  // lrts._slot.run_pickled

// The bar with this id in the running task, or a detached one (outside a task, an id it did
// not make).
lrts::ProgressBar& bar_of(Py_ssize_t id) {
  static lrts::ProgressBar detached;
  if (id < 0 || static_cast<size_t>(id) >= g_running.bars.size()) return detached;
  return g_running.bars[static_cast<size_t>(id)];
}

std::string format_exception(py::error_already_set& e) {
  try {
    py::object tb = py::module_::import("traceback");
    py::list lines = tb.attr("format_exception")(e.type(), e.value(), e.trace());
    std::string text;
    for (auto l : lines) text += py::str(l).cast<std::string>();
    // "ValueError: message" first, then the traceback.
    std::string head = py::str(e.type().attr("__name__")).cast<std::string>();
    const std::string msg = py::str(e.value()).cast<std::string>();
    if (!msg.empty()) head += ": " + msg;
    while (!text.empty() && text.back() == '\n') text.pop_back();
    return head + "\n" + text;
  } catch (...) {
    return e.what();
  }
}

std::string invoke_python(lrts::TaskContext& ctx, std::string_view fields) {
  py::gil_scoped_acquire gil;
  msgpack::object_handle oh = msgpack::unpack(fields.data(), fields.size());
  const msgpack::object& m = oh.get();
  const msgpack::object* blob = nullptr;
  if (m.type == msgpack::type::MAP) {
    for (uint32_t i = 0; i < m.via.map.size; ++i) {
      const auto& k = m.via.map.ptr[i].key;
      if (k.type == msgpack::type::STR &&
          std::string_view(k.via.str.ptr, k.via.str.size) == "pickle") {
        blob = &m.via.map.ptr[i].val;
      }
    }
  }
  if (!blob || blob->type != msgpack::type::BIN) {
    throw lrts::FieldsError("a Python task carries {\"name\", \"pickle\"}; this one does not");
  }
  g_running.ctx = &ctx;
  g_running.bars.clear();
  struct Reset {
    ~Reset() {
      g_running.ctx = nullptr;
      g_running.bars.clear();
      ++g_running.generation;
    }
  } reset;
  try {
    py::object result = (*g_runner)(py::bytes(blob->via.bin.ptr, blob->via.bin.size));
    Packer p;
    pack_result(p, result);
    return std::string(p.buf.data(), p.buf.size());
  } catch (py::error_already_set& e) {
    throw std::runtime_error(format_exception(e));
  }
}

int run_slot(const std::vector<std::string>& args, py::object runner) {
  g_runner = new py::object(std::move(runner));
  pickle_module();
  lrts::detail::register_service_type(
      lrts::detail::ServiceType{kPythonService, &invoke_python, {}});
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  py::gil_scoped_release release;
  return lrts::worker::slot_main(static_cast<int>(copy.size()), argv.data());
}

int64_t create_bar(const std::string& description, uint64_t total, const std::string& unit) {
  if (!g_running.ctx) {
    g_running.bars.emplace_back();  // outside a task: counts nowhere
  } else {
    g_running.bars.push_back(g_running.ctx->create_progress(description, total, unit));
  }
  return static_cast<int64_t>(g_running.bars.size() - 1);
}

// ---- the hot calls, in plain CPython ---------------------------------------------------------

// A bar object: advance() adds into the shared-memory cell while its task runs.
struct BarObject {
  PyObject_HEAD uint64_t generation;
  int64_t id;
};

inline lrts::ProgressBar& live_bar(BarObject* b) {
  return bar_of(b->generation == g_running.generation ? b->id : -1);
}

inline bool amount_of(PyObject* arg, uint64_t* out) {
  const unsigned long long v = PyLong_AsUnsignedLongLong(arg);
  if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) return false;
  *out = v;
  return true;
}

PyObject* bar_advance(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  uint64_t n = 1;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "advance(n=1) takes at most one argument");
    return nullptr;
  }
  if (nargs == 1 && !amount_of(args[0], &n)) return nullptr;
  live_bar(reinterpret_cast<BarObject*>(self)).advance(n);
  Py_RETURN_NONE;
}

PyObject* bar_close(PyObject* self, PyObject*) {
  live_bar(reinterpret_cast<BarObject*>(self)).close();
  Py_RETURN_NONE;
}

PyObject* bar_set_total(PyObject* self, PyObject* arg) {
  uint64_t n;
  if (!amount_of(arg, &n)) return nullptr;
  live_bar(reinterpret_cast<BarObject*>(self)).set_total(n);
  Py_RETURN_NONE;
}

PyObject* bar_get_count(PyObject* self, void*) {
  return PyLong_FromUnsignedLongLong(live_bar(reinterpret_cast<BarObject*>(self)).count());
}
PyObject* bar_get_total(PyObject* self, void*) {
  return PyLong_FromUnsignedLongLong(live_bar(reinterpret_cast<BarObject*>(self)).total());
}
PyObject* bar_get_id(PyObject* self, void*) {
  return PyLong_FromLongLong(reinterpret_cast<BarObject*>(self)->id);
}

PyMethodDef bar_methods[] = {
    {"advance", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&bar_advance)),
     METH_FASTCALL, "advance(n=1): adds n (about as cheap as a Python call gets)"},
    {"close", &bar_close, METH_NOARGS, "close(): the bar is done"},
    {"set_total", &bar_set_total, METH_O, "set_total(n): 0 means unknown"},
    {nullptr, nullptr, 0, nullptr}};
PyGetSetDef bar_getset[] = {
    {"count", &bar_get_count, nullptr, "units counted so far", nullptr},
    {"total", &bar_get_total, nullptr, "units expected (0: unknown)", nullptr},
    {"progress_id", &bar_get_id, nullptr, "the id increment_progress takes", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};
PyType_Slot bar_slots[] = {{Py_tp_methods, bar_methods},
                           {Py_tp_getset, bar_getset},
                           {Py_tp_doc, const_cast<char*>("A progress bar of the running task.")},
                           {0, nullptr}};
PyType_Spec bar_spec = {"lrts._lrts.ProgressBar", sizeof(BarObject), 0, Py_TPFLAGS_DEFAULT,
                        bar_slots};
PyTypeObject* g_bar_type = nullptr;

PyObject* make_bar(int64_t id) {
  auto* b = PyObject_New(BarObject, g_bar_type);
  if (!b) return nullptr;
  b->generation = g_running.generation;
  b->id = id;
  return reinterpret_cast<PyObject*>(b);
}

// Service.increment_progress(self, progress_id, amount=1), keywords allowed.
PyObject* increment_progress(PyObject*, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
  const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
  PyObject* id_obj = nargs > 1 ? args[1] : nullptr;
  PyObject* amount_obj = nargs > 2 ? args[2] : nullptr;
  if (nargs < 1 || nargs > 3) {
    PyErr_SetString(PyExc_TypeError, "increment_progress(progress_id, amount=1)");
    return nullptr;
  }
  if (kwnames) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); ++i) {
      PyObject* k = PyTuple_GET_ITEM(kwnames, i);
      if (PyUnicode_CompareWithASCIIString(k, "progress_id") == 0) {
        id_obj = args[nargs + i];
      } else if (PyUnicode_CompareWithASCIIString(k, "amount") == 0) {
        amount_obj = args[nargs + i];
      } else {
        PyErr_Format(PyExc_TypeError, "increment_progress() got an unexpected keyword '%U'", k);
        return nullptr;
      }
    }
  }
  if (!id_obj) {
    PyErr_SetString(PyExc_TypeError, "increment_progress() needs progress_id");
    return nullptr;
  }
  const Py_ssize_t id = PyLong_AsSsize_t(id_obj);
  if (id == -1 && PyErr_Occurred()) return nullptr;
  uint64_t n = 1;
  if (amount_obj && !amount_of(amount_obj, &n)) return nullptr;
  bar_of(id).advance(n);
  Py_RETURN_NONE;
}

PyMethodDef increment_def = {
    "increment_progress",
    reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&increment_progress)),
    METH_FASTCALL | METH_KEYWORDS,
    "increment_progress(progress_id, amount=1): advances a bar made by create_progress"};

}  // namespace

PYBIND11_MODULE(_lrts, m) {
  m.doc() = "lrts native module: the C++ client, encoding, and the Python slot runtime";

  py::register_exception<lrts::TimeoutError>(m, "TimeoutError", PyExc_TimeoutError);
  py::register_exception<lrts::AdminError>(m, "AdminError", PyExc_RuntimeError);
  py::register_exception<lrts::ResultError>(m, "ResultError", PyExc_ValueError);

  py::enum_<lrts::ServiceStatus>(m, "ServiceStatus",
                                 "How a task ended. CRASHED is the original lrts's name of "
                                 "FAILED (run raised, or every attempt was lost).")
      .value("FINISHED", lrts::ServiceStatus::finished)
      .value("CRASHED", lrts::ServiceStatus::failed)
      .value("FAILED", lrts::ServiceStatus::failed)
      .value("CANCELLED", lrts::ServiceStatus::cancelled)
      .value("TIMED_OUT", lrts::ServiceStatus::timed_out);

  py::class_<PyResult>(m, "ServiceResult", "What came back for one scheduled service.")
      .def_property_readonly(
          "service_id", [](const PyResult& r) { return r.r.service_id(); },
          "the id schedule_service returned")
      .def_property_readonly("service_result", &PyResult::service_result,
                             "the value run returned (None unless FINISHED)")
      .def_property_readonly(
          "service_status", [](const PyResult& r) { return r.r.status(); }, "how it ended")
      .def_property_readonly(
          "ok", [](const PyResult& r) { return r.r.ok(); }, "True if FINISHED")
      .def_property_readonly(
          "error", [](const PyResult& r) { return r.r.error(); },
          "why it did not finish: for an exception, its type, message and traceback")
      .def_property_readonly(
          "attempt", [](const PyResult& r) { return r.r.attempt(); },
          "which attempt produced it (1 unless retried)")
      .def_property_readonly(
          "worker", [](const PyResult& r) { return r.r.worker(); }, "the worker that ran it")
      .def_property_readonly(
          "run_time",
          [](const PyResult& r) { return std::chrono::duration<double>(r.r.run_time()).count(); },
          "seconds spent in run")
      .def("to_json", [](const PyResult& r) { return r.r.to_json(); })
      .def("__repr__", [](PyResult& r) {
        std::string s = "ServiceResult(service_id='" + r.r.service_id() +
                        "', service_status=" + lrts::to_string(r.r.status());
        if (r.r.ok()) {
          try {
            s += ", service_result=" + py::repr(r.service_result()).cast<std::string>();
          } catch (const std::exception& e) {
            s += ", service_result=<cannot be decoded: " + std::string(e.what()).substr(0, 200) +
                 ">";
          }
        } else {
          s += ", error=" + py::repr(py::str(r.r.error().substr(0, 200))).cast<std::string>();
        }
        return s + ")";
      });

  py::class_<Completion>(m, "Completion")
      .def("next_batch", &Completion::next_batch, py::arg("max") = 1024)
      .def("remaining", [](const Completion& c) { return c.range.remaining(); });

  py::class_<Client>(m, "Client")
      .def(py::init<const std::string&, int, const std::string&, int, const std::string&, double,
                    bool, const std::string&, bool, bool>(),
           py::arg("scheduler_address"), py::arg("scheduler_port"), py::arg("progress_address"),
           py::arg("progress_port"), py::arg("application_id"), py::arg("disconnect_grace_s"),
           py::arg("collect_only"), py::arg("auth_dir"), py::arg("track_progress"),
           py::arg("show_progress"))
      .def("start", &Client::start)
      .def("stop", &Client::stop)
      .def("detach", &Client::detach)
      .def("flush", &Client::flush, py::arg("timeout_s") = py::none())
      .def("wait_connected", &Client::wait_connected, py::arg("timeout_s") = py::none())
      .def("schedule_python", &Client::schedule_python)
      .def("schedule_native", &Client::schedule_native)
      .def("wait_for", &Client::wait_for, py::arg("service_id"), py::arg("timeout_s") = py::none())
      .def("wait_for_multi", &Client::wait_for_multi, py::arg("service_ids"),
           py::arg("timeout_s") = py::none())
      .def("as_completed", &Client::as_completed, py::arg("service_ids"),
           py::arg("timeout_s") = py::none())
      .def("cancel", &Client::cancel)
      .def("progress", &Client::progress, py::arg("service_id") = py::none())
      .def("on_progress", &Client::on_progress)
      .def("set_stage", &Client::set_stage)
      .def("application_id", &Client::application_id)
      .def("connected", &Client::connected)
      .def("pending_service_ids", &Client::pending_service_ids)
      .def("collect_ready", &Client::collect_ready)
      .def("results_waiting", &Client::results_waiting)
      .def("failure", &Client::failure)
      .def("status_json", &Client::status_json, py::arg("timeout_s") = 5.0);

  m.def("admin_query", [](const std::string& address, int port, const std::string& auth_dir,
                          double timeout_s, const std::string& what, const std::string& id) {
    lrts::AdminOptions o;
    o.scheduler_address = address;
    o.scheduler_port = port;
    o.auth_dir = auth_dir;
    o.timeout = to_ms(timeout_s);
    py::gil_scoped_release release;
    lrts::Admin admin(o);
    return admin.query_json(what, {}, id);
  });

  m.def("decode_result", [](const py::bytes& payload) { return decode_payload(payload); });
  m.def("encode_result", [](const py::object& value) {
    Packer p;
    pack_result(p, value);
    return py::bytes(p.buf.data(), p.buf.size());
  });
  m.def("run_slot", &run_slot, "Runs this process as a Python slot (lrts._slot).");
  m.def("create_bar",
        [](const std::string& description, uint64_t total, const std::string& unit,
           bool as_object) -> py::object {
          const int64_t id = create_bar(description, total, unit);
          if (!as_object) return py::int_(id);
          return py::reinterpret_steal<py::object>(make_bar(id));
        });
  m.def("close_bar", [](int64_t id) { bar_of(static_cast<Py_ssize_t>(id)).close(); });
  m.def("task_info", []() -> py::object {
    if (!g_running.ctx) return py::none();
    return py::make_tuple(g_running.ctx->service_id(), g_running.ctx->attempt());
  });

  g_bar_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&bar_spec));
  if (!g_bar_type) throw py::error_already_set();
  m.add_object("ProgressBar", reinterpret_cast<PyObject*>(g_bar_type));
  // A function that binds as a method (Service.increment_progress = this).
  PyObject* f = PyCFunction_NewEx(&increment_def, nullptr, m.ptr());
  if (!f) throw py::error_already_set();
  m.add_object("increment_progress_method",
               py::reinterpret_steal<py::object>(PyInstanceMethod_New(f)));
  Py_DECREF(f);
  m.attr("PICKLE_EXT") = kPickleExt;
}
