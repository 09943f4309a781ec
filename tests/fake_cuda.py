"""A simulated CUDA device for CPU-only tests: ``with fake_cuda(): ...``.

Inside the block the CPU-only torch behaves like a machine with one CUDA device,
``cuda:0``, whose memory is the host's. Every tensor the block creates "on the device"
(``device="cuda"``, ``.to("cuda")``, ``.cuda()``, or any result of an operation on such
a tensor) is a :class:`DeviceTensor`: a CPU tensor that reports
``.device == torch.device("cuda", 0)``, ``.is_cuda == True``, ``.is_cpu == False`` and
``.get_device() == 0``. Code that mixes host and device tensors where real CUDA would
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
   Any ``cuda:N`` with ``N > 0`` raises ``RuntimeError: CUDA error: invalid device
   ordinal``.
7. Host access: ``.numpy()`` and ``np.asarray`` on a device tensor raise ``TypeError:
   can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor
   to host memory first.``; ``.item()``, ``.tolist()``, ``float()``, ``bool()`` work (they
   synchronise on a real GPU). ``.pin_memory()`` of a host tensor returns a host copy
   (pinned memory is host memory); of a device tensor it raises, as on a real GPU.

``torch.cuda`` inside the block: ``is_available()`` True, ``device_count()`` 1,
``current_device()`` 0, ``mem_get_info()`` the ``(free, total)`` given to
:func:`fake_cuda` (a small ``free`` forces code that sizes itself to the free memory,
e.g. data streaming, onto its large-data path), ``synchronize``/``empty_cache`` no-ops,
``Stream``/``stream``/``current_stream``/``default_stream`` no-op stand-ins,
``get_device_name()`` ``"fake_cuda"``. ``torch.cuda.OutOfMemoryError`` is left as is.

Not simulated
-------------
- Asynchrony: everything runs in order on the CPU, so missing synchronisations,
  ``non_blocking`` races and stream ordering bugs do not show.
- CUDA graphs: ``torch.cuda.CUDAGraph``, ``torch.cuda.graph`` and
  ``make_graphed_callables`` raise ``NotImplementedError``; code that captures graphs
  must be run with capture disabled.
- Real kernels: cuBLAS/cuDNN numerics, Triton compilation, atomics order; results are
  the CPU's.
- Memory limits: nothing runs out of memory; ``mem_get_info`` only reports numbers.
- Tensors that leave the block: they keep reporting ``cuda:0`` but are no longer checked.
- More than one device, pinned-memory state (``is_pinned()`` is always False),
  ``torch.Generator(device="cuda")``, storages (``untyped_storage().device`` is the CPU),
  pickling of device tensors, and calls from threads other than the one that entered
  the block (torch function modes are per thread).
"""

import contextlib
from types import SimpleNamespace

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

#: The one simulated device.
DEVICE = torch.device("cuda", 0)
_HOST = torch.device("cpu")
_MISMATCH = "Expected all tensors to be on the same device, but found at least two devices, "
_NUMPY = ("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
          "tensor to host memory first.")


class DeviceTensor(torch.Tensor):
    """A CPU tensor standing for one in the fake device's memory (see the module notes)."""

    # The mode does all the work; as a subclass it behaves like a plain tensor.
    __torch_function__ = torch._C._disabled_torch_function_impl

    @property
    def device(self):
        """The simulated device, ``cuda:0``."""
        return DEVICE

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
        return text[:-1] + f", device='{DEVICE}')"

    def get_device(self):
        """Device index, 0."""
        return 0

    def is_pinned(self):
        """False: device memory is not pinned host memory."""
        return False


def on_device(t):
    """Whether tensor ``t`` lives on the fake device."""
    return isinstance(t, DeviceTensor)


def _where(t):
    return "cuda:0" if on_device(t) else "cpu"


def _is_cuda_target(device):
    """True for a CUDA device spec, False for the CPU, None for no device."""
    if device is None:
        return None
    if isinstance(device, int):  # a bare index means a CUDA device
        device = torch.device("cuda", device)
    device = torch.device(device)
    if device.type == "cpu":
        return False
    if device.type != "cuda":
        raise RuntimeError(f"fake_cuda simulates only cpu and cuda:0, not {device}")
    if device.index not in (None, 0):
        raise RuntimeError("CUDA error: invalid device ordinal")
    return True


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


def _mark(out):
    """``out`` with every tensor in it on the fake device."""
    if isinstance(out, torch.Tensor):
        return out if on_device(out) else out.as_subclass(DeviceTensor)
    if isinstance(out, list):
        return [_mark(o) for o in out]
    if isinstance(out, tuple) and not isinstance(out, torch.Size):
        items = [_mark(o) for o in out]
        if type(out) is tuple:
            return tuple(items)
        if hasattr(out, "_fields"):  # namedtuple
            return type(out)(*items)
        return type(out)(items)  # torch.return_types structseq
    return out


def _same_device(tensors, where, allow_host_scalars=True):
    """Raise like real CUDA when ``tensors`` span the fake device and the host."""
    devs = [t for t in tensors if on_device(t)]
    hosts = [t for t in tensors if not on_device(t) and not (allow_host_scalars and t.dim() == 0)]
    if devs and hosts:
        first = _where(tensors[0])
        second = "cpu" if first == "cuda:0" else "cuda:0"
        raise RuntimeError(f"{_MISMATCH}{first} and {second}! (when checking arguments "
                           f"for {where})")


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


def _parse_to(args, kwargs):
    """``(device or None, dtype or None, copy, memory_format)`` of a ``Tensor.to`` call."""
    rest = list(args)
    device, dtype = kwargs.get("device"), kwargs.get("dtype")
    if rest and isinstance(rest[0], torch.Tensor):
        other = rest.pop(0)
        device, dtype = (DEVICE if on_device(other) else _HOST), other.dtype
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
    target = _is_cuda_target(device)
    src = on_device(t)
    dst = src if target is None else target
    out = t.to(dtype=t.dtype if dtype is None else dtype, copy=copy or dst != src,
               memory_format=memory_format)
    if out is t:
        return t
    return _mark(out) if dst else out  # a new tensor from the CPU op: plain, on the host


class _Mode(TorchFunctionMode):
    """Sees every torch call inside :func:`fake_cuda` (the module notes give the rules)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        T = torch.Tensor
        if func is torch.device:
            return func(*args, **kwargs)
        if func is T.to:
            return _move(args[0], *_parse_to(args[1:], kwargs))
        if func is T.cuda:
            device = kwargs.get("device", args[1] if len(args) > 1 else None)
            _is_cuda_target(DEVICE if device is None else device)
            return _move(args[0], DEVICE, memory_format=kwargs.get(
                "memory_format", torch.preserve_format))
        if func is T.cpu:
            return _move(args[0], _HOST, memory_format=kwargs.get(
                "memory_format", torch.preserve_format))
        if func is T.type_as:
            return _move(args[0], DEVICE if on_device(args[1]) else _HOST, args[1].dtype)
        if func in (T.numpy, T.__array__):
            force = func is T.numpy and kwargs.get("force", args[1] if len(args) > 1 else False)
            if on_device(args[0]) and not force:
                raise TypeError(_NUMPY)
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
            return _mark(out) if on_device(args[0]) else out
        if func is T.copy_:  # copies work across devices
            return func(*args, **kwargs)
        if func is T.new_tensor:  # copies its data to self's device (or to ``device``)
            target = _is_cuda_target(kwargs.get("device"))
            if target is not None:
                kwargs["device"] = _HOST
            out = func(*args, **kwargs)
            return _mark(out) if (on_device(args[0]) if target is None else target) else out

        target = None
        if "device" in kwargs:
            target = _is_cuda_target(kwargs["device"])
            if target is not None:
                kwargs["device"] = _HOST
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False  # host memory either way
        tensors = list(_tensors((args, kwargs)))
        if func in _SHAPE_ONLY:
            tensors = tensors[:1]
        if any(on_device(t) for t in tensors):
            if func in _STRICT:
                checked = tensors
                if func in _INDEX_FILL and len(args) > 3 and isinstance(args[3], torch.Tensor):
                    checked = [t for t in tensors if t is not args[3]]  # read with .item()
                _same_device(checked, _name(func), allow_host_scalars=False)
            else:
                _same_device(tensors, _name(func))
        out = func(*args, **kwargs)
        if target and func in _AS_TENSOR:
            out = out.clone()  # a device copy never shares host memory
        mark = any(on_device(t) for t in tensors) if target is None else target
        return _mark(out) if mark else out

    @staticmethod
    def _getitem(func, args, kwargs):
        t, index = args[0], args[1]
        idx, _ = _advanced(index)
        if not on_device(t) and any(on_device(i) for i in idx):
            raise RuntimeError("indices should be either on cpu or on the same device as the "
                               "indexed tensor (cpu)")
        out = func(*args, **kwargs)
        return _mark(out) if on_device(t) else out

    @staticmethod
    def _check_put(t, value, where):
        """Rule 4: indices anywhere; the value on ``t``'s device unless it is 0-dim."""
        if isinstance(value, torch.Tensor) and value.dim() > 0 and (
                on_device(value) != on_device(t)):
            raise RuntimeError(f"{_MISMATCH}{_where(t)} and {_where(value)}! (when checking "
                               f"arguments for {where})")

    @staticmethod
    def _setitem(func, args, kwargs):
        t, index, value = args[0], args[1], args[2]
        _, advanced = _advanced(index)
        if advanced:
            _Mode._check_put(t, value, "index_put_")
        return func(*args, **kwargs)  # basic indexing: copy_, which crosses devices


class _Stream:
    """No-op stand-in for ``torch.cuda.Stream``: work runs in order on the CPU."""

    def __init__(self, device=None, priority=0, **kwargs):
        self.device = DEVICE

    def wait_stream(self, stream):
        pass

    def wait_event(self, event):
        pass

    def record_event(self, event=None):
        return event

    def synchronize(self):
        pass

    def query(self):
        return True


def _no_graphs(*args, **kwargs):
    raise NotImplementedError(
        "fake_cuda does not simulate CUDA graph capture; run the code that captures "
        "graphs with capture disabled (its eager schedule) under fake_cuda.")


@contextlib.contextmanager
def fake_cuda(free=16 * 2**30, total=24 * 2**30):
    """Make the CPU-only torch behave like a machine with one CUDA device, ``cuda:0``.

    Parameters
    ----------
    free, total : int
        Bytes that ``torch.cuda.mem_get_info()`` reports.

    Yields
    ------
    SimpleNamespace
        ``device`` (``torch.device("cuda", 0)``) and ``on_device`` (the test for a tensor).
    """
    def mem_get_info(device=None):
        _is_cuda_target(DEVICE if device is None else device)
        return int(free), int(total)

    patches = {
        "is_available": lambda: True,
        "device_count": lambda: 1,
        "current_device": lambda: 0,
        "mem_get_info": mem_get_info,
        "synchronize": lambda device=None: None,
        "empty_cache": lambda: None,
        "get_device_name": lambda device=None: "fake_cuda",
        "Stream": _Stream,
        "stream": lambda stream=None: contextlib.nullcontext(stream),
        "current_stream": lambda device=None: _Stream(),
        "default_stream": lambda device=None: _Stream(),
        "CUDAGraph": _no_graphs,
        "graph": _no_graphs,
        "make_graphed_callables": _no_graphs,
    }
    missing = object()
    saved = {name: getattr(torch.cuda, name, missing) for name in patches}
    for name, value in patches.items():
        setattr(torch.cuda, name, value)
    try:
        with _Mode():
            yield SimpleNamespace(device=DEVICE, on_device=on_device)
    finally:
        for name, value in saved.items():
            if value is missing:
                delattr(torch.cuda, name)
            else:
                setattr(torch.cuda, name, value)
