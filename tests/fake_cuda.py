"""A simulated CUDA device for CPU-only tests: ``with fake_cuda(): ...``.

Inside the block the CPU-only torch behaves like a machine with CUDA devices
(``cuda:0`` by default; ``n_devices=2`` adds ``cuda:1``), whose memory is the host's.
Every tensor the block creates "on a device" (``device="cuda"``, ``.to("cuda:1")``,
``.cuda()``, or any result of an operation on such a tensor) is a :class:`DeviceTensor`:
a CPU tensor that reports ``.device == torch.device("cuda", i)``, ``.is_cuda == True``,
``.is_cpu == False`` and ``.get_device() == i``. As on CUDA, a bare ``"cuda"`` means
the *current* device, which ``torch.cuda.device(i)`` (a context manager) and
``torch.cuda.set_device(i)`` change. Code that mixes host and device tensors where real CUDA would
refuse fails here with the error real CUDA raises, so device bugs show up in CPU tests.

``is_cuda`` is True, as on a real device, so that code branching on it takes its CUDA
branch; where that branch needs a real GPU feature (CUDA graphs) the harness says so
instead of pretending (see "Not simulated").

How it works: a :class:`torch.overrides.TorchFunctionMode` sees every torch call in the
block (functions, methods, indexing, property reads, factories). It rewrites CUDA
targets to the CPU, checks devices with the rules below, runs the call on the CPU and
marks the results that real torch would put on the device (``as_subclass``, an alias:
no copy, autograd intact). ``torch.cuda`` functions are patched for the block and
restored on exit.

Device rules enforced (``dev`` = on the fake device, ``host`` = CPU), from ATen
-------------------------------------------------------------------------------
1. Elementwise and other ops: all tensor arguments on one device, except that *host*
   0-dim tensors (and Python scalars) may join device tensors (TensorIterator's "CPU
   scalar" rule). A *device* 0-dim tensor with a host tensor of >0 dims raises.
   Error: ``RuntimeError: Expected all tensors to be on the same device, but found at
   least two devices, cuda:0 and cpu!``.
   Real torch is a little stricter than this: only binary/ternary elementwise kernels
   take a CPU scalar (at most one); the harness allows host 0-dim tensors in every op
   not listed in rule 2.
2. Strict ops (generated device checks, no CPU-scalar exception; the 0-dim value of
   ``index_fill`` excepted): ``index_select``, ``gather``, ``scatter``/``scatter_add``/
   ``scatter_reduce``, ``index_add``, ``index_copy``, ``index_reduce``, ``index_fill``,
   ``take``, ``take_along_dim``, ``put``, ``mm``/``bmm``/``matmul``/``addmm``/
   ``baddbmm``/``addbmm``/``addmv``/``addr``, ``cat``/``stack``: every tensor argument on
   one device, in both directions (a host index into a device tensor raises too).
3. Reading by advanced indexing, ``t[idx]`` (``index.Tensor``,
   ``check_indices_on_cpu_or_selfdevice``): ``dev[host_idx]`` and ``dev[dev_idx]`` work
   (host indices are copied to the device); ``host[dev_idx]`` raises ``RuntimeError:
   indices should be either on cpu or on the same device as the indexed tensor (cpu)``.
   A 0-dim integer or bool tensor index is read with ``.item()`` (a basic index), so it
   works from either device. Lists and numpy arrays are host indices.
4. Writing by advanced indexing, ``t[idx] = v`` / ``index_put_`` (``_index_put_impl_``,
   ``make_info``): index tensors may be on either device (they are moved to ``t``'s);
   ``v`` must be on ``t``'s device unless it is a 0-dim tensor or a Python scalar.
   Error: ``RuntimeError: Expected all tensors to be on the same device, ...``.
5. Basic indexing (ints, slices, ``None``, ``...``) reads views; writing through it is a
   ``copy_``, which works across devices, as does ``t.copy_(src)``.
6. Moves: ``.to("cuda")``/``.to(torch.device("cuda", 0))``/``.to(0)``/``.cuda()`` from
   the host and ``.cpu()``/``.to("cpu")`` from the device copy the data (a device tensor
   never shares memory with host memory, so in-place updates do not leak back into a
   numpy array passed to ``torch.from_numpy``); a move to the device the tensor is
   already on returns the tensor itself. ``.to(other)`` and ``.type_as(other)`` take
   ``other``'s device. ``torch.as_tensor``/``torch.asarray`` with a CUDA device copy.
   A ``cuda:N`` with ``N >= n_devices`` raises ``RuntimeError: CUDA error: invalid
   device ordinal``; tensors on two different devices in one op raise as in rule 1.
7. Host access: ``.numpy()`` and ``np.asarray`` on a device tensor raise ``TypeError:
   can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor
   to host memory first.``; ``.item()``, ``.tolist()``, ``float()``, ``bool()`` work (they
   synchronise on a real GPU). ``.pin_memory()`` of a host tensor returns a host copy
   (pinned memory is host memory); of a device tensor it raises, as on a real GPU.

``torch.cuda`` inside the block: ``is_available()`` True, ``device_count()`` the
``n_devices`` given, ``current_device()``/``set_device()``/``device(i)`` the current
device, ``mem_get_info()`` the ``(free, total)`` given to
:func:`fake_cuda` (a small ``free`` forces code that sizes itself to the free memory,
e.g. data streaming, onto its large-data path), ``synchronize``/``empty_cache`` no-ops,
``Stream``/``stream``/``current_stream``/``default_stream`` no-op stand-ins,
``get_device_name()`` ``"fake_cuda"``. ``torch.cuda.OutOfMemoryError`` is left as is.

CUDA graphs (``graphs=True``)
-----------------------------
``torch.cuda.CUDAGraph`` and ``torch.cuda.graph(g)`` record every torch call made in the
capture block (the block runs its calls once, which a real capture does not: code must
not rely on what the buffers hold after a capture, nor can it on a GPU) and
``g.replay()`` runs them again, writing each result into the tensor the capture made,
as a graph replays fixed kernels on fixed addresses. Like a real capture: a call that
synchronises with the host in the block (``.item()``, ``.cpu()``, ``.tolist()``,
``torch.cuda.synchronize()``) raises ``RuntimeError: CUDA error: operation not
permitted when stream is capturing``; and a capture whose calls run on a device other
than the one current when it began records *nothing*, with torch's warning that the
graph is empty, so its replays do nothing (the bug of capturing for ``cuda:1`` while
``cuda:0`` is current). ``torch.cuda.is_current_stream_capturing()`` tells whether a
capture is under way. Each graph records the current device at its capture
(``graph.device``); the namespace :func:`fake_cuda` yields counts the calls on device
tensors run eagerly (``launches``, outside captures and replays) and the replays
(``replays``), so tests can count the kernels of an eager step.

Faults
------
``fake.fault(exc)`` makes the next synchronising call (``torch.cuda.synchronize()``,
``.item()``, ``.cpu()``, ``.tolist()``) raise ``exc``, as an asynchronous device error
surfaces at the next synchronisation on a real GPU.

Not simulated
-------------
- Asynchrony: everything runs in order on the CPU, so missing synchronisations,
  ``non_blocking`` races and stream ordering bugs do not show.
- CUDA graphs without ``graphs=True``: ``torch.cuda.CUDAGraph``, ``torch.cuda.graph``
  and ``make_graphed_callables`` raise ``NotImplementedError``; code that captures
  graphs must then run with capture disabled. ``make_graphed_callables`` is never
  simulated; captures that allocate from a memory pool shared between graphs are
  simulated as separate graphs.
- Real kernels: cuBLAS/cuDNN numerics, Triton compilation, atomics order; results are
  the CPU's.
- Memory limits: nothing runs out of memory; ``mem_get_info`` only reports numbers.
- Tensors that leave the block: they keep reporting ``cuda:0`` but are no longer checked.
- Peer access between devices, pinned-memory state (``is_pinned()`` is always False),
  ``torch.Generator(device="cuda")``, storages (``untyped_storage().device`` is the CPU),
  pickling of device tensors, and calls from threads other than the one that entered
  the block (torch function modes are per thread).
"""

import contextlib
import warnings

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

#: The first simulated device (the only one by default).
DEVICE = torch.device("cuda", 0)
_HOST = torch.device("cpu")
_MISMATCH = "Expected all tensors to be on the same device, but found at least two devices, "
_CAPTURING = "CUDA error: operation not permitted when stream is capturing"
_EMPTY_GRAPH = ("The CUDA Graph is empty. This usually means that the graph was attempted "
                "to be captured on wrong device or stream.")


class _State:
    """What the active block simulates: its devices, the current one, captures, counters."""

    def __init__(self, n_devices=1, free=16 * 2**30, total=24 * 2**30, graphs=False):
        self.n_devices, self.free, self.total, self.graphs = n_devices, free, total, graphs
        self.current = 0  # index of the current device
        self.capture = None  # the graph being captured
        self.replaying = False
        self.launches = 0  # device calls run eagerly (outside captures and replays)
        self.replays = 0
        self.fault = None  # raised at the next synchronisation


_STATE = _State()  # the active block's (a default one outside blocks)


def _index(t):
    return getattr(t, "_fake_index", 0)


class DeviceTensor(torch.Tensor):
    """A CPU tensor standing for one in a fake device's memory (see the module notes)."""

    # The mode does all the work; as a subclass it behaves like a plain tensor.
    __torch_function__ = torch._C._disabled_torch_function_impl

    @property
    def device(self):
        """The simulated device, ``cuda:i``."""
        return torch.device("cuda", _index(self))

    @property
    def is_cuda(self):
        """True, as for a tensor on a real CUDA device."""
        return True

    @property
    def is_cpu(self):
        """False, as for a tensor on a real CUDA device."""
        return False

    def __repr__(self, *, tensor_contents=None):
        with torch._C.DisableTorchFunction():
            text = repr(self.as_subclass(torch.Tensor))
        return text[:-1] + f", device='{self.device}')"

    def get_device(self):
        """Device index."""
        return _index(self)

    def is_pinned(self):
        """False: device memory is not pinned host memory."""
        return False


def on_device(t):
    """Whether tensor ``t`` lives on a fake device."""
    return isinstance(t, DeviceTensor)


def _where(t):
    return f"cuda:{_index(t)}" if on_device(t) else "cpu"


def _target(device):
    """Where a device spec points: None (no spec), ``"host"``, or a CUDA device index.

    A bare ``"cuda"`` means the current device, as in torch.
    """
    if device is None:
        return None
    if isinstance(device, int):  # a bare index means a CUDA device
        device = torch.device("cuda", device)
    device = torch.device(device)
    if device.type == "cpu":
        return "host"
    if device.type != "cuda":
        raise RuntimeError(f"fake_cuda simulates only cpu and cuda, not {device}")
    index = _STATE.current if device.index is None else device.index
    if not 0 <= index < _STATE.n_devices:
        raise RuntimeError("CUDA error: invalid device ordinal")
    return index


def _is_cuda_target(device):
    """True for a CUDA device spec, False for the CPU, None for no device."""
    where = _target(device)
    return None if where is None else where != "host"


def _tensors(obj):
    """Every tensor in ``obj``, looking inside lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)) and not isinstance(obj, torch.Size):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _mark(out, index=0):
    """``out`` with every tensor in it on fake device ``index`` (device tensors stay)."""
    if isinstance(out, torch.Tensor):
        if on_device(out):
            return out
        out = out.as_subclass(DeviceTensor)
        out._fake_index = index
        return out
    if isinstance(out, list):
        return [_mark(o, index) for o in out]
    if isinstance(out, tuple) and not isinstance(out, torch.Size):
        items = [_mark(o, index) for o in out]
        if type(out) is tuple:
            return tuple(items)
        if hasattr(out, "_fields"):  # namedtuple
            return type(out)(*items)
        return type(out)(items)  # torch.return_types structseq
    return out


def _same_device(tensors, where, allow_host_scalars=True):
    """Raise like real CUDA when ``tensors`` span devices; the device index, or None."""
    devs = [t for t in tensors if on_device(t)]
    indices = sorted({_index(t) for t in devs})
    if len(indices) > 1:
        raise RuntimeError(f"{_MISMATCH}cuda:{indices[0]} and cuda:{indices[1]}! (when "
                           f"checking arguments for {where})")
    hosts = [t for t in tensors if not on_device(t) and not (allow_host_scalars and t.dim() == 0)]
    if devs and hosts:
        first = _where(tensors[0])
        second = "cpu" if first != "cpu" else _where(devs[0])
        raise RuntimeError(f"{_MISMATCH}{first} and {second}! (when checking arguments "
                           f"for {where})")
    return indices[0] if indices else None


def _advanced(index):
    """Tensors of ``index`` used as advanced indices, and whether there are any.

    0-dim integer and bool tensors are read with ``.item()`` (basic indexing); lists and
    arrays are advanced but become host tensors.
    """
    items = index if isinstance(index, tuple) else (index,)
    found, advanced = [], False
    for item in items:
        if isinstance(item, torch.Tensor):
            if item.dim() == 0 and not (item.dtype.is_floating_point or item.is_complex()):
                continue  # read with .item(): a Python int or bool
            found.append(item)
            advanced = True
        elif isinstance(item, (list, tuple)) or (isinstance(item, np.ndarray) and item.ndim):
            found.extend(_tensors(item))
            advanced = True
    return found, advanced


def _name(func):
    return getattr(func, "__qualname__", getattr(func, "__name__", repr(func)))


def _collect(*names):
    """The torch functions and Tensor methods called ``names`` (and in-place forms)."""
    out = set()
    for n in names:
        for owner in (torch, torch.Tensor):
            for variant in (n, n + "_"):
                f = getattr(owner, variant, None)
                if f is not None:
                    out.add(f)
    return out


_STRICT = _collect(
    "index_select", "gather", "scatter", "scatter_add", "scatter_reduce", "index_add",
    "index_copy", "index_reduce", "index_fill", "take", "take_along_dim", "put",
    "mm", "bmm", "matmul", "__matmul__", "__rmatmul__", "addmm", "baddbmm", "addbmm", "addmv",
    "addr",
    "cat", "concat", "concatenate", "stack",
)
_INDEX_FILL = _collect("index_fill")
_INDEX_PUT = _collect("index_put")
_SHAPE_ONLY = {torch.Tensor.expand_as, torch.Tensor.view_as, torch.Tensor.reshape_as}
_AS_TENSOR = {torch.as_tensor, torch.asarray}
# calls that wait for the device (a copy to the host, a value read)
_SYNCS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy,
          torch.Tensor.__array__, torch.Tensor.__bool__, torch.Tensor.__float__,
          torch.Tensor.__int__, torch.Tensor.__index__}


def _parse_to(args, kwargs):
    """``(device or None, dtype or None, copy, memory_format)`` of a ``Tensor.to`` call."""
    rest = list(args)
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    if rest and isinstance(rest[0], torch.Tensor):
        other = rest.pop(0)
        device, dtype = (other.device if on_device(other) else _HOST), other.dtype
    elif rest and isinstance(rest[0], (str, torch.device, int)) and not isinstance(
            rest[0], bool):
        device = rest.pop(0)
        if rest and isinstance(rest[0], torch.dtype):
            dtype = rest.pop(0)
    elif rest and isinstance(rest[0], torch.dtype):
        dtype = rest.pop(0)
    copy = kwargs.get("copy", rest[1] if len(rest) > 1 else False)
    return device, dtype, bool(copy), kwargs.get("memory_format", torch.preserve_format)


def _move(t, device, dtype=None, copy=False, memory_format=torch.preserve_format):
    """``t`` on ``device`` (None: where it is) with ``dtype``, as real ``Tensor.to``."""
    target = _target(device)
    src = _index(t) if on_device(t) else "host"
    dst = src if target is None else target
    out = t.to(dtype=t.dtype if dtype is None else dtype, copy=copy or dst != src,
               memory_format=memory_format)
    if out is t:
        return t
    # a new tensor from the CPU op: plain, on the host
    return out if dst == "host" else _mark(out.as_subclass(torch.Tensor), dst)


def _syncs(func, args, kwargs):
    """Whether the call waits for the device: a value or a copy read on the host."""
    if not any(on_device(t) for t in _tensors(args)):
        return False
    if func in _SYNCS:
        return True
    if func is torch.Tensor.to:
        return _target(_parse_to(args[1:], kwargs)[0]) == "host"
    return False


def _is_kernel(func, tensors, kwargs, out):
    """Whether a call on device tensors launches work (not a view or a metadata read)."""
    if "out" in kwargs or func is torch.Tensor.__setitem__:
        return True
    name = getattr(func, "__name__", "")
    if name.endswith("_") and not name.startswith("_") or (
            name.startswith("__i") and func not in _SYNCS):
        return True  # in place (add_, __iadd__)
    outs = list(_tensors(out))
    if not outs:
        return False
    storages = {t.untyped_storage().data_ptr() for t in tensors}
    return any(o.untyped_storage().data_ptr() not in storages for o in outs)


class _Mode(TorchFunctionMode):
    """Sees every torch call inside :func:`fake_cuda` (the module notes give the rules)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        st = _STATE
        if _syncs(func, args, kwargs):
            if st.capture is not None:
                raise RuntimeError(_CAPTURING)
            if st.fault is not None:
                exc, st.fault = st.fault, None
                raise exc
        out = self._call(func, args, dict(kwargs))
        tensors = [t for t in _tensors((args, kwargs)) if on_device(t)]
        if not tensors:
            tensors = [t for t in _tensors(out) if on_device(t)]
        if tensors and st.capture is not None:
            st.capture.record(func, args, kwargs, out, {_index(t) for t in tensors})
        elif tensors and not st.replaying and _is_kernel(func, tensors, kwargs, out):
            st.launches += 1
        return out

    def _call(self, func, args, kwargs):
        T = torch.Tensor
        if func is torch.device:
            return func(*args, **kwargs)
        if func is T.to:
            return _move(args[0], *_parse_to(args[1:], kwargs))
        if func is T.cuda:
            device = kwargs.get("device", args[1] if len(args) > 1 else None)
            return _move(args[0], "cuda" if device is None else _cuda_spec(device),
                         memory_format=kwargs.get("memory_format", torch.preserve_format))
        if func is T.cpu:
            return _move(args[0], _HOST, memory_format=kwargs.get(
                "memory_format", torch.preserve_format))
        if func is T.type_as:
            return _move(args[0], args[1].device if on_device(args[1]) else _HOST,
                         args[1].dtype)
        if func in (T.numpy, T.__array__):
            force = func is T.numpy and kwargs.get("force", args[1] if len(args) > 1 else False)
            if on_device(args[0]) and not force:
                raise TypeError(f"can't convert {args[0].device} device type tensor to "
                                "numpy. Use Tensor.cpu() to copy the tensor to host memory "
                                "first.")
            if on_device(args[0]):
                return args[0].as_subclass(torch.Tensor).detach().clone().numpy()
            return func(*args, **kwargs)
        if func is T.pin_memory:
            if on_device(args[0]):
                raise RuntimeError(f"cannot pin '{args[0].type().replace('torch.', 'torch.cuda.')}'"
                                   " only dense CPU tensors can be pinned")
            return args[0].clone()  # pinned memory is host memory
        if func is T.is_pinned:
            return False
        if func is T.__getitem__:
            return self._getitem(func, args, kwargs)
        if func is T.__setitem__:
            return self._setitem(func, args, kwargs)
        if func in _INDEX_PUT:
            self._check_put(args[0], args[2] if len(args) > 2 else kwargs["values"],
                            _name(func))
            out = func(*args, **kwargs)
            return _mark(out, _index(args[0])) if on_device(args[0]) else out
        if func is T.copy_:  # copies work across devices
            return func(*args, **kwargs)
        if func is T.new_tensor:  # copies its data to self's device (or to ``device``)
            target = _target(kwargs.get("device"))
            if target is not None:
                kwargs["device"] = _HOST
            out = func(*args, **kwargs)
            if target is None:
                return _mark(out, _index(args[0])) if on_device(args[0]) else out
            return out if target == "host" else _mark(out, target)

        target = None
        if "device" in kwargs:
            target = _target(kwargs["device"])
            if target is not None:
                kwargs["device"] = _HOST
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False  # host memory either way
        tensors = list(_tensors((args, kwargs)))
        if func in _SHAPE_ONLY:
            tensors = tensors[:1]
        index = None
        if any(on_device(t) for t in tensors):
            if func in _STRICT:
                checked = tensors
                if func in _INDEX_FILL and len(args) > 3 and isinstance(args[3], torch.Tensor):
                    checked = [t for t in tensors if t is not args[3]]  # read with .item()
                index = _same_device(checked, _name(func), allow_host_scalars=False)
            else:
                index = _same_device(tensors, _name(func))
        out = func(*args, **kwargs)
        if target not in (None, "host") and func in _AS_TENSOR:
            out = out.clone()  # a device copy never shares host memory
        if target is None:
            return out if index is None else _mark(out, index)
        return out if target == "host" else _mark(out, target)

    @staticmethod
    def _getitem(func, args, kwargs):
        t, index = args[0], args[1]
        idx, _ = _advanced(index)
        if not on_device(t) and any(on_device(i) for i in idx):
            raise RuntimeError("indices should be either on cpu or on the same device as the "
                               "indexed tensor (cpu)")
        out = func(*args, **kwargs)
        return _mark(out, _index(t)) if on_device(t) else out

    @staticmethod
    def _check_put(t, value, where):
        """Rule 4: indices anywhere; the value on ``t``'s device unless it is 0-dim."""
        if isinstance(value, torch.Tensor) and value.dim() > 0 and (
                _where(value) != _where(t)):
            raise RuntimeError(f"{_MISMATCH}{_where(t)} and {_where(value)}! (when checking "
                               f"arguments for {where})")

    @staticmethod
    def _setitem(func, args, kwargs):
        t, index, value = args[0], args[1], args[2]
        _, advanced = _advanced(index)
        if advanced:
            _Mode._check_put(t, value, "index_put_")
        return func(*args, **kwargs)  # basic indexing: copy_, which crosses devices


def _cuda_spec(device):
    """``Tensor.cuda``'s ``device`` argument as a CUDA device spec."""
    if isinstance(device, int):
        return torch.device("cuda", device)
    device = torch.device(device)
    if device.type != "cuda":
        raise RuntimeError(f"Invalid device, must be cuda device, got {device}")
    return device


class _Stream:
    """No-op stand-in for ``torch.cuda.Stream``: work runs in order on the CPU."""

    def __init__(self, device=None, priority=0, **kwargs):
        index = _target("cuda" if device is None else device)
        self.device = torch.device("cuda", index)

    def wait_stream(self, stream):
        pass

    def wait_event(self, event):
        pass

    def record_event(self, event=None):
        return event

    def synchronize(self):
        _synchronize()

    def query(self):
        return True


class _DeviceGuard:
    """Stand-in for ``torch.cuda.device``: makes a device current for a block."""

    def __init__(self, device):
        if isinstance(device, int) and device < 0 or device is None:
            self.index = None  # torch: a no-op
        else:
            if isinstance(device, torch.device) and device.type == "cuda" and device.index is None:
                self.index = None
            else:
                self.index = _target(device)

    def __enter__(self):
        self.prev = _STATE.current
        if self.index is not None:
            _STATE.current = self.index
        return self

    def __exit__(self, *exc):
        _STATE.current = self.prev
        return False


def _set_device(device):
    _STATE.current = _target(device)


def _synchronize(device=None):
    if device is not None:
        _target(device)
    st = _STATE
    if st.capture is not None:
        raise RuntimeError(_CAPTURING)
    if st.fault is not None:
        exc, st.fault = st.fault, None
        raise exc


class _Graph:
    """Stand-in for ``torch.cuda.CUDAGraph``: replays the calls its capture recorded."""

    def __init__(self, *args, **kwargs):
        self.calls, self.device, self.empty, self.touched = [], None, False, set()

    def record(self, func, args, kwargs, out, indices):
        self.calls.append((func, args, kwargs, out))
        self.touched |= indices

    def replay(self):
        """Run the recorded calls again, each result written into the captured one."""
        st = _STATE
        if st.capture is not None:
            raise RuntimeError(_CAPTURING)
        st.replays += 1
        st.replaying = True
        try:
            for func, args, kwargs, out in self.calls:
                _write_back(out, func(*args, **kwargs))
        finally:
            st.replaying = False

    def reset(self):
        self.calls = []

    def pool(self):
        return None


def _write_back(old, new):
    """Write a replayed result into the tensor the capture made (its fixed address)."""
    if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
        same = (old.data_ptr() == new.data_ptr() and old.stride() == new.stride()
                and old.shape == new.shape)
        if not same:
            with torch._C.DisableTorchFunction():
                old.copy_(new)
    elif isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        for o, n in zip(old, new):
            _write_back(o, n)


@contextlib.contextmanager
def _capture(graph, pool=None, stream=None, capture_error_mode="global"):
    """Stand-in for ``torch.cuda.graph``: record the block's calls into ``graph``."""
    st = _STATE
    if st.capture is not None:
        raise RuntimeError("fake_cuda: a capture is already under way")
    graph.calls, graph.touched, graph.empty = [], set(), False
    graph.device = st.current
    st.capture = graph
    try:
        yield graph
    finally:
        st.capture = None
    if graph.touched - {graph.device} or not graph.calls:
        # torch's capture stream is the current device's: work on another device went to
        # that device's own stream, ran at once and was not captured
        graph.calls, graph.empty = [], True
        warnings.warn(_EMPTY_GRAPH, UserWarning, stacklevel=3)


def _no_graphs(*args, **kwargs):
    raise NotImplementedError(
        "fake_cuda does not simulate CUDA graph capture unless asked (graphs=True); run "
        "the code that captures graphs with capture disabled (its eager schedule) under "
        "fake_cuda.")


class _Handle:
    """What :func:`fake_cuda` yields: the devices, and the block's counters and faults."""

    def __init__(self, state):
        self._state = state
        self.device = DEVICE
        self.devices = [torch.device("cuda", i) for i in range(state.n_devices)]
        self.on_device = on_device

    @property
    def launches(self):
        """Calls on device tensors run eagerly so far (views and reads not counted)."""
        return self._state.launches

    @property
    def replays(self):
        """Graph replays so far."""
        return self._state.replays

    @property
    def current(self):
        """Index of the current device."""
        return self._state.current

    def fault(self, exc):
        """Raise ``exc`` at the next synchronisation (an asynchronous device error)."""
        self._state.fault = exc


@contextlib.contextmanager
def fake_cuda(free=16 * 2**30, total=24 * 2**30, n_devices=1, graphs=False):
    """Make the CPU-only torch behave like a machine with CUDA devices ``cuda:0``, ...

    Parameters
    ----------
    free, total : int
        Bytes that ``torch.cuda.mem_get_info()`` reports.
    n_devices : int
        Simulated devices.
    graphs : bool
        Simulate CUDA graph capture and replay (see "CUDA graphs" in the module notes).

    Yields
    ------
    _Handle
        ``device`` (``cuda:0``), ``devices``, ``on_device`` (the test for a tensor),
        the counters ``launches``, ``replays`` and ``current``, and ``fault(exc)``.
    """
    global _STATE
    state = _State(int(n_devices), free, total, graphs)

    def mem_get_info(device=None):
        _target("cuda" if device is None else device)
        return int(free), int(total)

    def get_device_name(device=None):
        if device is not None:
            _target(device)
        return "fake_cuda"

    patches = {
        "is_available": lambda: True,
        "device_count": lambda: state.n_devices,
        "current_device": lambda: state.current,
        "set_device": _set_device,
        "device": _DeviceGuard,
        "mem_get_info": mem_get_info,
        "synchronize": _synchronize,
        "empty_cache": lambda: None,
        "get_device_name": get_device_name,
        "Stream": _Stream,
        "stream": lambda stream=None: contextlib.nullcontext(stream),
        "current_stream": lambda device=None: _Stream(device),
        "default_stream": lambda device=None: _Stream(device),
        "is_current_stream_capturing": lambda: state.capture is not None,
        "CUDAGraph": _Graph if graphs else _no_graphs,
        "graph": _capture if graphs else _no_graphs,
        "make_graphed_callables": _no_graphs,
    }
    missing = object()
    saved = {name: getattr(torch.cuda, name, missing) for name in patches}
    saved_state = _STATE
    for name, value in patches.items():
        setattr(torch.cuda, name, value)
    _STATE = state
    try:
        with _Mode():
            yield _Handle(state)
    finally:
        _STATE = saved_state
        for name, value in saved.items():
            if value is missing:
                delattr(torch.cuda, name)
            else:
                setattr(torch.cuda, name, value)
