"""Run the real smbus2 code against the emulator: an i2c-dev stand-in behind ``fcntl.ioctl``.

``smbus2.SMBus`` talks to Linux through two calls: ``os.open(path)`` and the module-level
``ioctl`` it imports from :mod:`fcntl`. Everything between the driver and the kernel (building
the ``i2c_msg`` array, the ``i2c_rdwr_ioctl_data`` struct, the functionality probe at open)
is smbus2's own code, and it is exactly the code that runs on a Raspberry Pi. The virtual bus
alone skips all of it, because it *is* an smbus2 look-alike. This module closes that gap:

>>> with emulated_i2c_dev(bus) as path:          # doctest: +SKIP
...     with SMBus(path) as smbus:                 # the real smbus2.SMBus
...         smbus.i2c_rdwr(i2c_msg.read(0x60, 4))  # reaches bus.i2c_rdwr through the shim

The device node is a stand-in (a temporary regular file unless a path is given), and
``smbus2.smbus2.ioctl`` is replaced by a dispatcher while at least one stand-in is active.

How the dispatcher recognises "our" file descriptors: by identity of the open file, not by
number or name. Each stand-in is registered under its ``(st_dev, st_ino)``; every ioctl call
``os.fstat``-s its descriptor and looks the pair up. A descriptor number reused by an unrelated
file after ``close`` therefore never matches, a second ``open`` of the stand-in (or a ``dup``)
always does, and every other descriptor goes, untouched, to the real :func:`fcntl.ioctl`.

How requests are decoded: as the kernel's i2c-dev would (Linux drivers/i2c/i2c-dev.c), from raw
memory with this module's own ctypes mirrors of ``struct i2c_rdwr_ioctl_data`` and
``struct i2c_msg`` (include/uapi/linux/i2c-dev.h, i2c.h), never with smbus2's classes, so a
layout mistake in smbus2 would show up here as it would on the Pi. I2C_RDWR copies every message
into fresh buffers (``memdup_user``), runs the transfer on the virtual bus, and copies read data
back to the caller's buffers only when the whole transfer succeeded (``copy_to_user`` after
``i2c_transfer`` returned >= 0); a failed transfer raises the virtual bus's own ``OSError``, so
the errno a driver sees (EREMOTEIO for a NACK on the Pi personality) is the bus's.

Supported requests: I2C_FUNCS (the functionality mask i2c-bcm2835 reports), I2C_SLAVE and
I2C_SLAVE_FORCE (range-checked like i2c-dev; only SMBus transfers would use the address),
I2C_RDWR, and I2C_RETRIES / I2C_TIMEOUT / I2C_PEC as accepted no-ops. I2C_SMBUS (smbus2's
``read_byte`` and friends) is not emulated and fails with EOPNOTSUPP saying so; any other
request fails with ENOTTY, as i2c-dev's default case does. Messages with flags other than
I2C_M_RD (10-bit addresses, RECV_LEN, NOSTART …) fail with EOPNOTSUPP: the virtual bus models
plain 7-bit messages only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Final, Protocol, TypeAlias

import smbus2.smbus2 as _smbus2_module
from smbus2 import i2c_msg

__all__ = [
    "BCM2835_FUNCS",
    "I2C_FUNCS",
    "I2C_PEC",
    "I2C_RDWR",
    "I2C_RETRIES",
    "I2C_SLAVE",
    "I2C_SLAVE_FORCE",
    "I2C_SMBUS",
    "I2C_TIMEOUT",
    "RdwrBus",
    "emulated_i2c_dev",
]

# ioctl request numbers (include/uapi/linux/i2c-dev.h); the shim keeps its own copy.
I2C_RETRIES: Final = 0x0701
I2C_TIMEOUT: Final = 0x0702
I2C_SLAVE: Final = 0x0703
I2C_FUNCS: Final = 0x0705
I2C_SLAVE_FORCE: Final = 0x0706
I2C_RDWR: Final = 0x0707
I2C_PEC: Final = 0x0708
I2C_SMBUS: Final = 0x0720

_I2C_M_RD: Final = 0x0001
_I2C_RDWR_IOCTL_MAX_MSGS: Final = 42  # i2c-dev.h
_I2C_RDWR_MAX_MSG_LEN: Final = 8192  # i2c-dev.c, i2cdev_ioctl_rdwr
_I2C_FUNC_I2C: Final = 0x0000_0001
_I2C_FUNC_SMBUS_EMUL: Final = 0x0EFF_0008  # quick, byte, byte data, word, proc call, PEC …
#: What ``i2cdetect -F 1`` reads on a Raspberry Pi: i2c-bcm2835's ``bcm2835_i2c_func`` returns
#: ``I2C_FUNC_I2C | I2C_FUNC_SMBUS_EMUL``.
BCM2835_FUNCS: Final = _I2C_FUNC_I2C | _I2C_FUNC_SMBUS_EMUL

_PATCHED_NAME: Final = "ioctl"  # the name smbus2 calls: ``from fcntl import ioctl``


class _I2cMsg(ctypes.Structure):
    """``struct i2c_msg`` (include/uapi/linux/i2c.h)."""

    _fields_ = (
        ("addr", ctypes.c_uint16),
        ("flags", ctypes.c_uint16),
        ("len", ctypes.c_uint16),
        ("buf", ctypes.c_void_p),
    )


class _RdwrIoctlData(ctypes.Structure):
    """``struct i2c_rdwr_ioctl_data`` (include/uapi/linux/i2c-dev.h)."""

    _fields_ = (
        ("msgs", ctypes.c_void_p),
        ("nmsgs", ctypes.c_uint32),
    )


class RdwrBus(Protocol):
    """What the stand-in forwards transfers to: ``VirtualI2CBus``, or anything with its surface."""

    def i2c_rdwr(self, *msgs: i2c_msg) -> None: ...


IoctlFunction: TypeAlias = Callable[..., int | bytes]


@dataclass(frozen=True)
class _Node:
    """One active stand-in: the bus behind it, and its path for error messages."""

    bus: RdwrBus
    path: str


class _Registry:
    """The patch on ``smbus2.smbus2.ioctl`` and the stand-ins it serves.

    Shared by nested or concurrent ``emulated_i2c_dev`` blocks: installed when the first one
    enters, and whatever it replaced is put back when the last one exits. Descriptors that are
    not stand-ins always go to :func:`fcntl.ioctl` itself, never to the replaced function, so
    a foreign patch laid over ours (which may call back into ours) cannot make a loop.
    """

    def __init__(self, module: ModuleType) -> None:
        self._module = module
        self._lock = threading.Lock()
        self._nodes: dict[tuple[int, int], _Node] = {}
        self._replaced: IoctlFunction | None = None

    def add(self, key: tuple[int, int], node: _Node) -> None:
        with self._lock:
            if key in self._nodes:
                raise ValueError(f"{node.path} is already an emulated i2c-dev node")
            if not self._nodes:
                self._replaced = getattr(self._module, _PATCHED_NAME)
                setattr(self._module, _PATCHED_NAME, self.ioctl)
            self._nodes[key] = node

    def remove(self, key: tuple[int, int]) -> None:
        with self._lock:
            del self._nodes[key]
            if self._nodes:
                return
            # Put back what we replaced, unless someone patched over us meanwhile: their patch
            # stays, and ours, with no stand-ins left, passes every call to fcntl.ioctl.
            if getattr(self._module, _PATCHED_NAME) == self.ioctl:
                setattr(self._module, _PATCHED_NAME, self._replaced)
            self._replaced = None

    @property
    def active(self) -> bool:
        return bool(self._nodes)

    def ioctl(
        self, fd: object, request: int, arg: object = 0, mutate_flag: bool = True
    ) -> int | bytes:
        """Drop-in for :func:`fcntl.ioctl`: stand-in descriptors here, all others passed on."""
        node = self._lookup(fd)
        if node is None:
            real: IoctlFunction = fcntl.ioctl  # looked up per call: fcntl's, as it is now
            return real(fd, request, arg, mutate_flag)
        return _dispatch(node, request, arg, mutate_flag)

    def _lookup(self, fd: object) -> _Node | None:
        if not self._nodes:
            return None
        try:
            number = fd if isinstance(fd, int) else _fileno(fd)
            info = os.fstat(number)
        except (OSError, TypeError, ValueError):
            return None  # the real ioctl reports a bad descriptor in its own words
        return self._nodes.get((info.st_dev, info.st_ino))


def _fileno(obj: object) -> int:
    fileno = getattr(obj, "fileno", None)
    if fileno is None:
        raise TypeError(f"not a file descriptor: {obj!r}")
    number = fileno()
    if not isinstance(number, int):
        raise TypeError(f"fileno() returned {number!r}")
    return number


_REGISTRY = _Registry(_smbus2_module)


@contextlib.contextmanager
def emulated_i2c_dev(bus: RdwrBus, path: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Make ``smbus2.SMBus(<yielded path>)`` reach ``bus`` through smbus2's own ioctl calls.

    With ``path=None`` a temporary regular file is the device node (removed on exit). A given
    path is created if missing (and then removed on exit) or reused if it is a regular file;
    a character device is refused, so a real ``/dev/i2c-N`` can never be hijacked. Yields the
    path as a string because ``SMBus`` accepts ``str`` or ``int`` only.

    Everything is restored on exit. Blocks may nest or run in several threads at once, each
    with its own stand-in; the patch stays installed while any of them is active.
    """
    created = False
    if path is None:
        handle, name = tempfile.mkstemp(prefix="lokey-i2c-", suffix=".dev")
        os.close(handle)
        node_path = name
        created = True
    else:
        node_path = os.fspath(path)
        try:
            info = os.stat(node_path)
        except FileNotFoundError:
            Path(node_path).touch(mode=0o600, exist_ok=False)
            created = True
        else:
            if not stat.S_ISREG(info.st_mode):
                raise ValueError(
                    f"{node_path} is not a regular file; the emulated i2c-dev node must be a "
                    "stand-in file, never a real device node"
                )
    try:
        info = os.stat(node_path)
        key = (info.st_dev, info.st_ino)
        _REGISTRY.add(key, _Node(bus=bus, path=node_path))
        try:
            yield node_path
        finally:
            _REGISTRY.remove(key)
    finally:
        if created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(node_path)


# -- the emulated i2c-dev requests ---------------------------------------------------------------


def _oserror(code: int, detail: str) -> OSError:
    return OSError(code, f"{os.strerror(code)} (emulated i2c-dev: {detail})")


def _dispatch(node: _Node, request: int, arg: object, mutate_flag: bool) -> int | bytes:
    if request == I2C_RDWR:
        return _rdwr(node, arg, mutate_flag)
    if request == I2C_FUNCS:
        return _funcs(arg, mutate_flag)
    if request in (I2C_SLAVE, I2C_SLAVE_FORCE):
        # i2c-dev: 7-bit clients accept 0..0x7F, anything else (or a pointer) is EINVAL.
        if isinstance(arg, bool) or not isinstance(arg, int) or not 0 <= arg <= 0x7F:
            raise _oserror(errno.EINVAL, f"slave address {arg!r} is not a 7-bit address")
        return 0
    if request in (I2C_RETRIES, I2C_TIMEOUT, I2C_PEC):
        return 0
    if request == I2C_SMBUS:
        raise _oserror(
            errno.EOPNOTSUPP,
            "I2C_SMBUS transfers are not emulated; use i2c_rdwr (the ATECC608A needs only that)",
        )
    raise _oserror(errno.ENOTTY, f"unknown request 0x{request:04x}")


def _argument_memory(
    arg: object, size: int, mutate_flag: bool
) -> tuple[ctypes.Array[ctypes.c_char], bool]:
    """The argument's bytes as ctypes memory, and whether writes reach the caller's buffer.

    Mirrors :func:`fcntl.ioctl`: a writable buffer with ``mutate_flag`` is passed by reference
    (the kernel writes into it); any other buffer is copied, and ioctl returns the copy.
    """
    if isinstance(arg, int):
        # The kernel would take the integer as a user pointer; here it can only be garbage.
        raise _oserror(errno.EFAULT, f"expected a buffer argument, got the integer {arg}")
    try:
        view = memoryview(arg)  # type: ignore[arg-type]  # TypeError below if not a buffer
    except TypeError:
        raise _oserror(errno.EFAULT, f"argument {arg!r} is not a buffer") from None
    if view.nbytes < size:
        raise _oserror(errno.EFAULT, f"a {view.nbytes}-byte argument; need {size} bytes")
    memory_type = ctypes.c_char * view.nbytes
    if view.readonly or not mutate_flag:
        return memory_type.from_buffer_copy(view), False
    return memory_type.from_buffer(view), True  # keeps ``view`` (and so ``arg``) alive


def _funcs(arg: object, mutate_flag: bool) -> int | bytes:
    """I2C_FUNCS: ``put_user(funcs, (unsigned long __user *)arg)``."""
    memory, in_place = _argument_memory(arg, ctypes.sizeof(ctypes.c_ulong), mutate_flag)
    ctypes.c_ulong.from_buffer(memory).value = BCM2835_FUNCS
    return 0 if in_place else bytes(memory)


def _rdwr(node: _Node, arg: object, mutate_flag: bool) -> int | bytes:
    """I2C_RDWR: decode the struct from raw memory, as ``i2cdev_ioctl_rdwr`` does."""
    memory, in_place = _argument_memory(arg, ctypes.sizeof(_RdwrIoctlData), mutate_flag)
    header = _RdwrIoctlData.from_address(ctypes.addressof(memory))
    count: int = header.nmsgs
    base: int | None = header.msgs
    if not base or count == 0:
        raise _oserror(errno.EINVAL, "I2C_RDWR with no messages")
    if count > _I2C_RDWR_IOCTL_MAX_MSGS:
        raise _oserror(
            errno.EINVAL, f"{count} messages; i2c-dev accepts at most {_I2C_RDWR_IOCTL_MAX_MSGS}"
        )
    stride = ctypes.sizeof(_I2cMsg)
    user_buffers: list[tuple[int, int]] = []  # (address, length) of each read, for copy-back
    kernel_msgs: list[i2c_msg] = []
    for index in range(count):
        raw = _I2cMsg.from_address(base + index * stride)
        address: int = raw.addr
        flags: int = raw.flags
        length: int = raw.len
        buffer: int | None = raw.buf
        if length > _I2C_RDWR_MAX_MSG_LEN:
            raise _oserror(
                errno.EINVAL,
                f"a {length}-byte message; i2c-dev accepts at most {_I2C_RDWR_MAX_MSG_LEN}",
            )
        if flags & ~_I2C_M_RD:
            raise _oserror(
                errno.EOPNOTSUPP,
                f"message flags 0x{flags:04x}: only plain 7-bit reads and writes are emulated",
            )
        if length and not buffer:
            raise _oserror(errno.EFAULT, f"message {index} has {length} bytes and no buffer")
        if flags & _I2C_M_RD:
            kernel_msgs.append(i2c_msg.read(address, length))
            user_buffers.append((buffer or 0, length))
        else:
            data = ctypes.string_at(buffer or 0, length) if length else b""
            kernel_msgs.append(i2c_msg.write(address, data))
            user_buffers.append((0, 0))
    node.bus.i2c_rdwr(*kernel_msgs)  # an OSError (NACK, EBADF …) propagates with its errno
    for (target, length), msg in zip(user_buffers, kernel_msgs, strict=True):
        if target and length:
            ctypes.memmove(target, msg.buf, length)
    return count if in_place else bytes(memory)
