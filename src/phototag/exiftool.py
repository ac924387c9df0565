"""One long-lived ``exiftool -stay_open True -@ -`` process, with a deadline on every command.

Why a small own client instead of PyExifTool: every command needs a deadline (a hung exiftool must not block
a worker forever), a crash must restart the process transparently, and arguments must be encoded so that no
value can inject arguments. The protocol is short:

* the process starts as ``exiftool -config phototag.config -stay_open True -@ -`` (``-config`` comes first);
* a command is its arguments, one per line, then ``-echo4 {MARK N ${status}}`` and ``-executeN``;
* exiftool answers ``{readyN}`` on stdout and the echo marker (with the exit status) on stderr;
* sending and receiving share one deadline; past it the process group is killed (SIGKILL) and reaped;
* exiftool runs in its own session (a terminal's Ctrl-C does not kill it before the worker drains) and exits
  by itself when phototag dies (``PHOTOTAG_PARENT_PID``, see ``data/exiftool.config``): ``-stay_open`` would
  otherwise poll the closed pipe forever.

Argument encoding (``-@`` reads one argument per line, so a newline in a value would start a new argument):

* an assignment ``-TAG=VALUE`` (also ``+=``, ``-=``) is sent as ``-TAG= VALUE``: exiftool strips exactly one
  space after ``=``, so the value's own leading spaces survive;
* an assignment whose value holds a line break (or ``\\r``) is sent as ``-TAG<=FILE`` with the value in a
  private temp file, so it round-trips byte for byte and can never become an argument;
* any other argument with a line break, or starting with white space or ``#``, is sent as a ``#[CSTR]`` line
  (C escapes). exiftool 12.57 mangles ``$`` and ``@`` in such lines, so those are refused with a clear error;
* NUL characters are refused everywhere;
* file names are bytes on Linux: a name that is not valid UTF-8 (Python's lone surrogates) is sent as its
  original bytes (``surrogateescape``), which exiftool opens as they are;
* file names are never put where exiftool expands format codes (``-tagsFromFile FILE``, ``-o FILE``,
  ``-TAG<=FILE``, ``-w``): ``%d``, ``%e``, ``%f`` in a name would make exiftool read or write *another* file, and
  ``%%`` is not a reliable escape in 12.57. Sources are the target itself (``-tagsFromFile @``) and outputs
  are phototag's own temp names in a private folder (:func:`private_dir`).

Reading goes through ``-j -struct -G1`` with an ``-api Filter`` that prefixes every value with ``\\x1f``:
exiftool's JSON writes number-like strings as numbers and ``true``/``false`` as booleans, so a keyword
``1.50`` would read back as ``1.5``. With the prefix every value is a JSON string and reads back exactly.

Why one module of ~520 lines: the stay_open protocol, the argument encoding that blocks injection and the
deadline loop are one contract with exiftool, documented at the top; splitting would scatter it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ExiftoolDied, ExiftoolTimeout, MetadataError

log = logging.getLogger(__name__)

CONFIG_FILE = Path(str(resources.files("phototag") / "data" / "exiftool.config"))
"""exiftool configuration defining the ``XMP-phototag`` namespace (``http://ns.phototag.dev/1.0/``)."""
NAMESPACE_URI = "http://ns.phototag.dev/1.0/"

_ASSIGNMENT = re.compile(r"-[-:\w]+#?([-+<]?)=")
_MARK = "\x1f"  # prefix the read filter puts before every value (see the module docstring)
_READ_FILTER = 'Filter=$_ = "\\x1f" . $_'


@dataclass(frozen=True)
class ExiftoolResult:
    """What one command printed, and exiftool's exit status for it (0 ok, 1 error, 2 ``-if`` failed)."""

    stdout: str
    stderr: str
    status: int

    @property
    def errors(self) -> list[str]:
        """The ``Error:`` lines exiftool printed."""
        return [ln.strip() for ln in self.stderr.splitlines() if ln.lstrip().startswith("Error")]

    @property
    def warnings(self) -> list[str]:
        """The ``Warning:`` lines exiftool printed."""
        return [ln.strip() for ln in self.stderr.splitlines() if ln.lstrip().startswith("Warning")]


class Exiftool:
    """A client for one long-lived exiftool process. Thread-safe (commands are serialised).

    ``path`` is the executable (name or path), ``timeout`` the default per-command deadline in seconds,
    ``config_file`` the ``-config`` file loaded at start (None: exiftool's default). The process starts on the
    first command; after a crash (e.g. ``kill -9``) the next command restarts it; after a deadline passes the
    process is killed and :class:`ExiftoolTimeout` is raised, and the next command starts a fresh one. Use as
    a context manager or call :meth:`close`.
    """

    def __init__(
        self, path: str = "exiftool", timeout: float = 30.0, config_file: Path | None = CONFIG_FILE
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._exe = path
        self.timeout = timeout
        self.config_file = config_file
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._tmpdir: Path | None = None
        self._lock = threading.RLock()
        self._counter = 0
        self._token = secrets.token_hex(4)
        self._version: str | None = None
        self.restarts = 0
        """How many times the process was (re)started; for tests and ``phototag doctor``."""

    # -- properties ----------------------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The resolved executable (absolute path where it can be found on PATH)."""
        return shutil.which(self._exe) or self._exe

    @property
    def version(self) -> str:
        """exiftool's version (``12.57``); starts the process if needed."""
        if self._version is None:
            self._version = self.execute("-ver").stdout.strip()
        return self._version

    @property
    def pid(self) -> int | None:
        """The running process's id, or None when none runs."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    # -- lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the process now (commands start it on demand anyway)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._spawn()

    def _spawn(self) -> None:
        self._reap()
        argv = [self.path]
        if self.config_file is not None:
            if not Path(self.config_file).is_file():
                raise MetadataError(self.config_file, "exiftool config file is missing: reinstall phototag")
            argv += ["-config", str(self.config_file)]  # must be the first argument
        argv += ["-stay_open", "True", "-@", "-"]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # own session: a Ctrl-C in the terminal must not kill exiftool before the worker drains,
                # and a timeout can kill the whole group (a wrapper script and its children)
                start_new_session=True,
                # lets phototag's exiftool config exit exiftool when this process dies (see exiftool.config)
                env={**os.environ, "PHOTOTAG_PARENT_PID": str(os.getpid())},
            )
        except OSError as e:
            raise MetadataError(
                self._exe,
                f"cannot start exiftool: {e.strerror or e}. Install it (Debian/Ubuntu: apt-get install "
                "libimage-exiftool-perl) or set exiftool.path in the config.",
            ) from e
        self._proc = proc
        self._finalizer = weakref.finalize(self, _kill, proc)
        self.restarts += 1
        log.debug("exiftool started: pid %s (%s)", proc.pid, " ".join(argv))

    def _reap(self) -> None:
        """Forget the current process, killing it if still alive (no zombie is left)."""
        if self._finalizer is not None:
            self._finalizer()  # kills and waits
            self._finalizer = None
        self._proc = None

    def close(self) -> None:
        """Ask exiftool to exit, wait for it (killing it after 5 s), remove temp files. Idempotent."""
        with self._lock:
            proc = self._proc
            if proc is not None and proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(b"-stay_open\nFalse\n")
                    proc.stdin.flush()
                    proc.stdin.close()
                    proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._reap()
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None

    def __enter__(self) -> Exiftool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands ------------------------------------------------------------------------------------------

    def execute(
        self,
        *args: str | os.PathLike[str],
        timeout: float | None = None,
        file: Path | str | None = None,
        check: bool = True,
    ) -> ExiftoolResult:
        """Run one command. ``file`` names the photo for error messages; ``check`` raises MetadataError when
        exiftool's status is not 0. Raises ExiftoolTimeout (process killed; the next command restarts it)."""
        deadline = timeout if timeout is not None else self.timeout
        subject = Path(file) if file is not None else Path(self._exe)
        with self._lock:
            value_files: list[Path] = []
            try:
                lines = [self._encode(os.fspath(a), value_files, subject) for a in args]
                result = self._run(lines, deadline, subject)
            finally:
                for f in value_files:
                    with contextlib.suppress(OSError):
                        f.unlink()
        if check and result.status != 0:
            raise MetadataError(subject, describe_failure(result))
        return result

    def execute_json(
        self, *args: str | os.PathLike[str], timeout: float | None = None, file: Path | str | None = None
    ) -> list[dict[str, Any]]:
        """Run a reading command with ``-j -struct -G1``; one dict per file, values exact strings."""
        result = self.execute(
            "-j", "-struct", "-G1", "-api", _READ_FILTER, *args, timeout=timeout, file=file, check=False
        )
        if not result.stdout.strip():
            raise MetadataError(file or self._exe, describe_failure(result))
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError as e:
            raise MetadataError(
                file or self._exe, f"exiftool printed invalid JSON ({e}): {result.stdout[:200]}"
            ) from e
        return [_unmark(item) for item in data]

    def read_tags(self, path: Path | str, *tags: str, timeout: float | None = None) -> dict[str, Any]:
        """Read ``tags`` (e.g. ``"XMP-dc:Subject"``, ``"XMP-phototag:all"``; none: all) from one file.

        Keys are ``Group1:Tag`` (``XMP-dc:Subject``, ``IFD0:ImageDescription``); values are exact strings,
        lists of strings, dicts for structures. XMP list tags are always lists; IPTC lists with one item read
        as a plain string (normalise with :func:`as_list`). ``SourceFile`` is dropped. Raises MetadataError
        when the file cannot be read.
        """
        path = Path(path)
        if not path.exists():
            raise MetadataError(path, "file not found: it was moved or deleted")
        items = self.execute_json(*(f"-{t}" for t in tags), _abs(path), timeout=timeout, file=path)
        item = dict(items[0]) if items else {}
        item.pop("SourceFile", None)
        return item

    def write(
        self, path: Path | str, *args: str, timeout: float | None = None, ignore_minor: bool = True
    ) -> ExiftoolResult:
        """Write ``args`` (assignments like ``-XMP-dc:Subject+=cat``) into ``path`` in place, atomically.

        Uses ``-overwrite_original`` (exiftool writes ``FILE_exiftool_tmp`` and renames it over the file: no
        ``_original`` backups, the original stays intact on failure). ``ignore_minor`` adds ``-m`` so that
        minor problems elsewhere in a file (odd maker notes) do not block the write. Raises MetadataError
        naming the file and the fix.
        """
        path = Path(path)
        opts = ["-overwrite_original", *(["-m"] if ignore_minor else [])]
        return self.execute(*opts, *args, _abs(path), timeout=timeout, file=path)

    # -- internals -----------------------------------------------------------------------------------------

    def _encode(self, arg: str, value_files: list[Path], subject: Path) -> str:
        if "\x00" in arg:
            raise MetadataError(subject, f"cannot pass a NUL character to exiftool (in {arg[:60]!r})")
        m = _ASSIGNMENT.match(arg)
        if m:
            head, value = arg[: m.end()], arg[m.end() :]
            if "\n" in value or "\r" in value:
                # the value goes through a file: -TAG<=FILE, -TAG+<=FILE, -TAG-<=FILE
                if m.group(1) == "<":
                    raise MetadataError(subject, f"a file name for {head!r} contains a line break")
                value_file = self._value_file(value)
                value_files.append(value_file)
                return f"{head[:-1]}<={value_file}"
            return f"{head} {value}"  # exiftool strips exactly one space after '='
        if "\n" in arg or "\r" in arg or arg[:1].isspace() or arg.startswith("#"):
            if "$" in arg or "@" in arg:
                raise MetadataError(
                    subject,
                    f"cannot pass {arg[:80]!r} to exiftool: it contains a line break (or starts with a space "
                    "or #) together with '$' or '@'. Rename the file.",
                )
            escaped = arg.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
            return "#[CSTR]" + escaped
        return arg

    def _value_file(self, value: str) -> Path:
        if self._tmpdir is None or not self._tmpdir.is_dir():
            self._tmpdir = private_dir("phototag-exiftool-")
        self._counter += 1
        f = self._tmpdir / f"value-{self._counter}"
        f.write_bytes(value.encode("utf-8"))
        return f

    def _run(self, lines: Sequence[str], timeout: float, subject: Path) -> ExiftoolResult:
        for attempt in (1, 2):
            self.start()
            proc = self._proc
            assert proc is not None
            self._counter += 1
            n = self._counter
            marker = f"{{phototag-{self._token}-{n} ${{status}}}}"
            payload = "".join(f"{line}\n" for line in lines) + f"-echo4\n{marker}\n-execute{n}\n"
            try:
                return self._exchange(proc, payload.encode("utf-8", "surrogateescape"), n, timeout, subject)
            except _NotSent:
                # it died between commands (e.g. kill -9) before reading a byte: sending again is safe
                self._reap()
                if attempt == 2:
                    raise MetadataError(
                        subject, "exiftool exits as soon as it starts: run it by hand to see why"
                    ) from None
        raise AssertionError("unreachable")

    def _exchange(
        self, proc: subprocess.Popen[bytes], payload: bytes, n: int, timeout: float, subject: Path
    ) -> ExiftoolResult:
        """Send ``payload`` and collect the answer, all under one deadline (a hung exiftool that stops reading
        its input must not block the write either)."""
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        ready = f"{{ready{n}}}\n".encode()
        err_mark = re.compile(rf"\{{phototag-{self._token}-{n} (-?\d+)\}}\n".encode())
        out, err = bytearray(), bytearray()
        pending = memoryview(payload)
        status: int | None = None
        deadline = time.monotonic() + timeout
        stdin_fd = proc.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        with selectors.DefaultSelector() as sel:
            sel.register(stdin_fd, selectors.EVENT_WRITE)
            sel.register(proc.stdout, selectors.EVENT_READ, out)
            sel.register(proc.stderr, selectors.EVENT_READ, err)
            while not (out.endswith(ready) and status is not None):
                left = deadline - time.monotonic()
                if left <= 0:
                    self._reap()
                    raise ExiftoolTimeout(
                        subject,
                        f"exiftool did not answer within {timeout:g} s; it was killed and will be restarted. "
                        "Raise exiftool.timeout for very large files, or check the file.",
                    )
                for key, _ in sel.select(left):
                    if key.fd == stdin_fd:
                        try:
                            written = os.write(stdin_fd, pending[:65536])
                        except BlockingIOError:
                            continue
                        except OSError:
                            if len(pending) == len(payload):
                                raise _NotSent from None
                            break  # died mid-command: the read side reports it
                        pending = pending[written:]
                        if not pending:
                            sel.unregister(stdin_fd)
                        continue
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        code = proc.wait()
                        self._reap()
                        if len(pending) == len(payload):
                            raise _NotSent
                        raise ExiftoolDied(
                            subject,
                            f"exiftool exited unexpectedly (status {code}) while processing this file; "
                            "it will be restarted for the next one",
                        )
                    key.data.extend(chunk)
                if status is None and (m := err_mark.search(err)):
                    status = int(m.group(1))
                    del err[m.start() :]
        assert status is not None
        return ExiftoolResult(
            stdout=out[: -len(ready)].decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            status=status,
        )


class _NotSent(Exception):
    """The process was gone before it read any of the command."""


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill ``proc`` (and its process group) and reap it. Safe to call on a finished process."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _abs(path: Path) -> str:
    # absolute paths never start with '-' or '#', so a file name cannot be read as an option or a comment
    return str(path.absolute())


def _unmark(value: Any) -> Any:
    if isinstance(value, str):
        return value[1:] if value.startswith(_MARK) else value
    if isinstance(value, list):
        return [_unmark(v) for v in value]
    if isinstance(value, dict):
        return {k: _unmark(v) for k, v in value.items()}
    return value


_HINTS = (
    (
        ("temporary file already exists",),
        "another exiftool is writing this file, or a killed one left FILE_exiftool_tmp behind",
    ),
    (
        (
            "permission denied",
            "error creating",
            "error opening output",
            "error renaming",
            "read-only",
            "not writable",
        ),
        "make the folder and file writable by the user phototag runs as (chmod, or ReadWritePaths= in the "
        "systemd unit)",
    ),
    (("file not found",), "the file was moved or deleted"),
    (("no space left",), "free disk space, then run phototag again"),
    (
        (
            "not a valid",
            "file format error",
            "unknown file type",
            "corrupted",
            "file is empty",
            "can't currently write",
        ),
        "the file is not a valid image of its type (or exiftool cannot write this format): check or "
        "re-export it, or use metadata.mode: sidecar",
    ),
)


def describe_failure(result: ExiftoolResult) -> str:
    """A one-line message for a failed command: exiftool's own error text plus what to do about it."""
    messages = result.errors or result.warnings or [result.stderr.strip() or result.stdout.strip()]
    text = "; ".join(m for m in messages if m) or f"exiftool failed with status {result.status}"
    lower = text.lower()
    for needles, hint in _HINTS:
        if any(n in lower for n in needles):
            return f"{text}. Fix: {hint}."
    return f"{text} (exiftool status {result.status})"


def serialize_struct(value: Any) -> str:
    """exiftool's serialized-structure syntax for a dict / list / scalar (``{A=1,B=[x,y]}``), escaped.

    ``,``, ``|``, ``]`` and ``}`` are escaped with ``|`` everywhere, and a leading ``[``, ``{`` or white space
    too, so any text survives. Values with line breaks still go through :meth:`Exiftool.execute` safely.
    """
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}={serialize_struct(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(serialize_struct(v) for v in value) + "]"
    text = re.sub(r"([,|\]}])", r"|\1", str(value))
    return re.sub(r"^([\s\[{])", r"|\1", text)


def private_dir(prefix: str) -> Path:
    """A new private temp folder (mode 0700) whose path holds no ``%`` (exiftool would read it as a format
    code where it takes an output or source file name)."""
    for base in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        if "%" not in base and os.path.isdir(base):
            return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    raise MetadataError(tempfile.gettempdir(), "no temp folder without '%' in its path: set TMPDIR")


def disk_full(path: Path) -> bool:
    """True when the file system holding ``path`` has (almost) no space left for it: exiftool says only "Error
    writing output file", so a failed write checks this to tell the user what happened."""
    try:
        vfs = os.statvfs(path.parent)
        size = path.stat().st_size if path.exists() else 0
    except OSError:
        return False
    return vfs.f_bavail * vfs.f_frsize < size + (1 << 20)


def as_list(value: Any) -> list[Any]:
    """exiftool's JSON gives a one-item list as a plain value: normalise to a list (None -> [])."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]
