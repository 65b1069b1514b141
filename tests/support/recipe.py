"""A Dockerfile from the docs, built and run without Docker (no container daemon here).

`dockerfile(markdown)` takes the one ```dockerfile block of a Markdown file and `parse` splits
it into instructions.  `build` plays them in order, as ``docker build`` would:

- ``FROM python:3.X-slim``: the image's Python is a fresh venv of this interpreter
  (`CachedVenv`), with no site-packages of ours: torch and the test venv's packages are not
  on its path;
- ``ARG NAME[=default]``: a build argument, set in the environment of the RUNs after it
  (``--build-arg`` values come from ``build_args``; one the file never declares is an error,
  where Docker warns and then pulls from the internet);
- ``COPY . DEST``: the build context (this checkout) copied under the image's root, less what
  ``.dockerignore`` excludes, as Docker sends it;
- ``RUN``: each ``&&``-joined command run in the image's environment (its venv first on
  ``PATH``, ``HOME`` in the image's root, the ENVs and ARGs so far), paths under ``DEST``
  mapped to the copy.  ``pip install "DEST[extras]"`` installs the wheel built from the copy
  into the cached venv, its third-party requirements linked from this environment's installed
  files rather than downloaded (see `CachedVenv`);
- ``ENV K=V``: set for the RUNs after it and for the entrypoint;
- ``ENTRYPOINT [...]`` (exec form): what `Image.start` runs, with the ENVs and no ARGs.

Any other instruction, or a RUN with shell syntax beyond ``&&``, raises: the simulation must
not silently skip a step the image would take.
"""

from __future__ import annotations

import email
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
#: Hang guards only (the install is offline: seconds).
INSTALL_TIMEOUT = 300
RUN_TIMEOUT = 300
_BLOCK = re.compile(r"^```dockerfile\n(.*?)^```", re.S | re.M)


def dockerfile(markdown: Path) -> str:
    """The text of the one ```dockerfile block in ``markdown``."""
    blocks = _BLOCK.findall(markdown.read_text())
    assert len(blocks) == 1, f"{markdown}: {len(blocks)} dockerfile blocks, expected one"
    return blocks[0]


def parse(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments), ...]``: comment lines and blank lines dropped, ``\\``
    continuations joined.  (A ``#`` after a RUN's command is the shell's comment: `build`
    drops it as ``sh -c`` would.)"""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        steps.append((word.upper(), rest.strip()))
    return steps


# -- the build context ---------------------------------------------------------------------


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**``) as a regex on a relative
    path with ``/`` separators."""
    out, i = "", 0
    glob = glob.strip().strip("/")
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out + r"\Z")


def ignore_patterns(context: Path) -> list[re.Pattern[str]]:
    path = context / ".dockerignore"
    lines = path.read_text().splitlines() if path.exists() else []
    lines = [x.strip() for x in lines if x.strip() and not x.strip().startswith("#")]
    assert not any(x.startswith("!") for x in lines), "exceptions (!) are not simulated"
    return [_pattern(x) for x in lines]


def copy_context(context: Path, dest: Path) -> list[str]:
    """Copy ``context`` into ``dest`` less what its ``.dockerignore`` excludes (a folder
    excluded is excluded whole); returns the relative paths copied."""
    patterns = ignore_patterns(context)
    copied = []
    for folder, dirs, files in os.walk(context):
        rel = Path(folder).relative_to(context)
        dirs[:] = [d for d in dirs
                   if not any(p.match((rel / d).as_posix()) for p in patterns)]
        for name in files:
            path = (rel / name).as_posix()
            if any(p.match(path) for p in patterns):
                continue
            (dest / rel).mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(folder) / name, dest / rel / name, follow_symlinks=False)
            copied.append(path)
    return copied


def build_wheel(source: Path, out: Path) -> Path:
    """The wheel of the project in ``source`` (a fresh copy: no stale ``build/``), made by
    setuptools' PEP 517 backend, as ``pip install``/``python -m build`` make it."""
    out.mkdir(parents=True, exist_ok=True)
    code = ("import sys; from setuptools import build_meta as b; "
            "print(b.build_wheel(sys.argv[1]))")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=source,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / proc.stdout.strip().splitlines()[-1]


def source_key(source: Path) -> str:
    """A hash of what the wheel is built from, and of the setuptools that builds it: equal
    keys, equal wheels.  That is the files setuptools reads in ``source`` (paths and bytes):
    the top-level files (pyproject.toml, README.md, licences) and the package folders
    (``embctl*`` at the top and in plugins/, as pyproject.toml's ``packages.find`` says);
    tests/, docs/ and bench/ do not go into it."""
    from importlib.metadata import version

    h = hashlib.sha256(f"setuptools=={version('setuptools')}\n".encode())
    read = [p for p in source.iterdir() if p.is_file()]
    for folder in [p for p in source.glob("embctl*") if p.is_dir()] + [source / "plugins"]:
        read += [p for p in folder.rglob("*") if p.is_file()]
    for path in sorted(read):
        h.update(f"{path.relative_to(source).as_posix()}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


# -- the image's Python -------------------------------------------------------------------
#
# ``pip install "/src[onnx]"`` in the image downloads the extra's third-party wheels from the
# index (a minute or two, every CI run: its cache starts empty).  Here they come from this
# interpreter's environment instead, offline: the same versions' installed files, linked.  The
# rest is pip's own work: the embctl wheel installed with ``--no-index`` and without
# ``--no-deps``, so pip's resolver must find every requirement of ``embctl[EXTRAS]`` already
# installed at a version that satisfies it, then ``pip check``.


def wheel_requirements(wheel: Path) -> tuple[str, list[Requirement]]:
    """The wheel's project name and its ``Requires-Dist`` lines (its METADATA: what pip
    reads), extras' lines included with their ``extra == "..."`` markers."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(archive.read(name))
    return meta["Name"], [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def closure(wheel: Path, extras: list[str]) -> dict[str, metadata.Distribution]:
    """The distributions ``pip install "WHEEL[EXTRAS]"`` leaves beside the wheel, taken from
    this interpreter's environment: the wheel's requirements and theirs (markers evaluated for
    this Python and each extra asked for, extras followed, ``embctl[x]`` included), every
    specifier met checked against the installed version.  A requirement not installed here, or
    not at a version that satisfies it, raises: the image's venv has no other source."""
    own, requires = wheel_requirements(wheel)
    own = canonicalize_name(own)
    found: dict[str, metadata.Distribution] = {}
    todo = [(own, "")] + [(own, canonicalize_name(x)) for x in extras]
    done: set[tuple[str, str]] = set()
    while todo:
        name, extra = todo.pop()
        if (name, extra) in done:
            continue
        done.add((name, extra))
        reqs = requires if name == own else [Requirement(r) for r in found[name].requires or []]
        for req in reqs:
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            dep, by = canonicalize_name(req.name), f"{name}[{extra}]" if extra else name
            if dep != own:
                try:
                    found.setdefault(dep, metadata.distribution(req.name))
                except metadata.PackageNotFoundError:
                    raise AssertionError(
                        f"{req} (required by {by}) is not installed in {sys.prefix}: the "
                        "image's venv is made from the packages installed there, offline; "
                        "pip install it there") from None
                version = found[dep].version
                assert req.specifier.contains(version, prereleases=True), (
                    f"{req} (required by {by}): {sys.prefix} has {dep} {version}")
            todo += [(dep, "")] + [(dep, canonicalize_name(x)) for x in req.extras]
    return found


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except FileExistsError:
        raise AssertionError(f"{dst}: in the venv already") from None
    except OSError:  # another filesystem, or no hard links there
        os.symlink(src, dst)


def _script(src: Path, dst: Path, python: Path) -> None:
    """A copy of the script ``src`` run by ``python``, its ``#!`` written as pip writes it at
    install time (the ``/bin/sh`` form where the path is over the kernel's 127 bytes)."""
    _, _, body = src.read_bytes().partition(b"\n")
    shebang = f"#!{python}\n"
    if len(shebang) > 127:
        shebang = f"#!/bin/sh\n'''exec' {shlex.quote(str(python))} \"$0\" \"$@\"\n' '''\n"
    dst.write_bytes(shebang.encode() + body)
    dst.chmod(src.stat().st_mode & 0o777)


def link_distribution(dist: metadata.Distribution, venv: Path, site: Path) -> None:
    """Put ``dist``'s installed files (its RECORD, and its .dist-info) into the venv whose
    site-packages is ``site``, at the same paths relative to site-packages: hard links (the same
    bytes, no copy; a symlink where a hard link fails).  Its scripts, whose ``#!`` names this
    interpreter, are copies naming the venv's python instead.  Their compiled extensions find
    their libraries through ``$ORIGIN``, which moves with them; no .pth is linked (none is in
    the [onnx] closure): a file that would still point into this environment raises."""
    origin, old, files = str(dist.locate_file("")), sys.prefix.encode(), dist.files or []
    record = next((f for f in files if f.name == "RECORD"
                   and f.parent.name.endswith(".dist-info")), None)
    assert record, f"{dist.name}: no RECORD (not installed from a wheel): cannot be linked"
    info = os.path.join(origin, str(record.parent))
    rels = {os.path.normpath(str(f)) for f in files}  # strings: ~6,000 files, no pathlib
    rels |= {os.path.relpath(os.path.join(d, n), origin)
             for d, _, names in os.walk(info) for n in names}
    made: set[str] = set()
    for rel in sorted(rels):
        src, dst = os.path.join(origin, rel), os.path.normpath(os.path.join(site, rel))
        assert dst.startswith(f"{venv}/"), f"{dist.name}: {rel} would go outside the venv"
        if not os.path.exists(src):
            assert "__pycache__" in rel, f"{dist.name}: {src} is in its RECORD, not installed"
            continue  # a .pyc never written: Python compiles it
        assert not rel.endswith(".pth"), f"{dist.name}: {src}: a .pth is not linked"
        if (folder := os.path.dirname(dst)) not in made:
            os.makedirs(folder, exist_ok=True)
            made.add(folder)
        head = b""
        if rel.startswith(".."):  # bin/ (scripts), share/, include/: outside site-packages
            with open(src, "rb") as f:
                head = f.read(512)
        if head.startswith(b"#!") and old in head.partition(b"\n")[0]:
            assert not os.path.lexists(dst), f"{dist.name}: {dst} is in the venv already"
            _script(Path(src), Path(dst), venv / "bin" / "python")
        else:
            assert not (head.startswith(b"#!") and old in head), f"{src}: not relocatable"
            _link(src, dst)  # (os.link refuses an existing dst: no file is linked twice)


@dataclass
class CachedVenv:
    """The image's Python: a venv kept in ``base`` (pytest's cache) under a key of what it is
    made from (the embctl sources (`source_key`), the extras, pip's options, the Python).  Made
    under a file lock, offline, in seconds: ``python -m venv --without-pip``, this environment's
    pip and the extras' closure linked in (`closure`, `link_distribution`), the wheel built
    from the copy installed by the venv's pip with ``--no-index`` (its resolver checks the
    closure), then ``pip check``.  A later session reuses it while the sources are the same and
    this environment still has the same versions."""

    base: Path
    python_version: str = field(default_factory=lambda: sys.version.split()[0])
    venv: Path | None = None
    #: What the last install did: ``venv`` (made: closure linked, wheel built and installed)
    #: or ``reused`` (made by an earlier session from the very same files).
    steps: list[str] = field(default_factory=list)
    #: The wheel installed (kept beside the venv).
    wheel: Path | None = None
    #: The closure linked in: project name -> version.
    packages: dict[str, str] = field(default_factory=dict)

    def key(self, options: list[str], extras: list[str], source: Path) -> str:
        text = json.dumps([self.python_version, sys.platform, sys.prefix, options,
                           sorted(extras), source_key(source)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def bin(self) -> Path:
        assert self.venv is not None, "no pip install yet: the venv is made by the first"
        return self.venv / "bin"

    def install(self, options: list[str], source: Path, extras: list[str]) -> None:
        """``pip install OPTIONS "SOURCE[EXTRAS]"`` into a new venv (see the class), or the
        venv an earlier session made from the same sources and packages."""
        from filelock import FileLock

        folder = self.base / f"docker-recipe-venv-{self.key(options, extras, source)}"
        venv, ready = folder / "venv", folder / "ready"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            made = json.loads(ready.read_text()) if ready.exists() else {}
            if made.get("venv") == str(venv) and all(
                    _installed_version(n) == v for n, v in made["packages"].items()):
                self.venv, self.steps, self.packages = venv, ["reused"], made["packages"]
                self.wheel = next((folder / "dist").glob("*.whl"))
                return
            self._drop_others(folder)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            wheel = build_wheel(source, folder / "dist")
            found = closure(wheel, extras)
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                           check=True, timeout=RUN_TIMEOUT)
            site = Path(subprocess.run(
                [str(venv / "bin" / "python"), "-c",
                 "import sysconfig; print(sysconfig.get_path('purelib'))"],
                check=True, capture_output=True, text=True, timeout=RUN_TIMEOUT).stdout.strip())
            for dist in [metadata.distribution("pip"), *found.values()]:
                link_distribution(dist, venv, site)
            requirement = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
            self._pip(venv, "install", "-q", "--no-index", *options, requirement)
            self._pip(venv, "check")
            self.packages = {name: d.version for name, d in sorted(found.items())}
            ready.write_text(json.dumps({"venv": str(venv), "packages": self.packages}))
            self.venv, self.wheel, self.steps = venv, wheel, ["venv"]

    @staticmethod
    def _drop_others(folder: Path) -> None:
        """Remove the venvs of other keys that no session is using."""
        from filelock import FileLock, Timeout

        for other in folder.parent.glob("docker-recipe-venv-*"):
            if other == folder or not other.is_dir():
                continue
            try:
                with FileLock(str(other) + ".lock", timeout=0):
                    shutil.rmtree(other, ignore_errors=True)
            except Timeout:
                continue

    @staticmethod
    def _pip(venv: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON"))}
        proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", *args,
                               "--disable-pip-version-check"], env=env,
                              capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        assert proc.returncode == 0, f"pip {' '.join(args)}:\n{proc.stdout}{proc.stderr}"


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


# -- the build -----------------------------------------------------------------------------


@dataclass
class Image:
    """What `build` leaves: the image's root folder, its Python, its ENVs and entrypoint."""

    root: Path
    venv: CachedVenv
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    base: str = ""
    runs: list[subprocess.CompletedProcess] = field(default_factory=list)
    #: COPY's destination -> the relative paths it copied.
    copied: dict[str, list[str]] = field(default_factory=dict)

    def environment(self, args: dict[str, str] | None = None,
                    env: dict[str, str] | None = None) -> dict[str, str]:
        """A container's environment: nothing of this process's, ``HOME`` in the image, then
        the build's ARGs, the ENVs (which beat an ARG) and ``docker run -e`` (which beats
        both)."""
        home = self.root / "root"
        home.mkdir(parents=True, exist_ok=True)
        return {"PATH": f"{self.venv.bin}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
                "LANG": "C.UTF-8", **(args or {}), **self.env, **(env or {})}

    def exec(self, argv: list[str], *, args: dict[str, str] | None = None,
             env: dict[str, str] | None = None, input: str | None = None
             ) -> subprocess.CompletedProcess:
        """``argv`` in the image (a program found on the image's PATH)."""
        environ = self.environment(args, env)
        program = shutil.which(argv[0], path=environ["PATH"])
        assert program, f"{argv[0]}: not on the image's PATH"
        return subprocess.run([program, *argv[1:]], env=environ, cwd=self.root, input=input,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)

    def start(self, input: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess:
        """``docker run -i [-e K=V] IMAGE`` with ``input`` on stdin: the entrypoint, with the
        ENVs and ``env`` (no ARG: they end with the build)."""
        assert self.entrypoint, "the Dockerfile has no ENTRYPOINT"
        return self.exec(self.entrypoint, env=env, input=input)


def _install(image: Image, argv: list[str], copies: dict[str, Path]) -> None:
    """``pip install [OPTIONS] "DEST[extras]"`` where DEST is a COPY's destination: the
    wheel built from that copy, into the image's venv."""
    assert argv[:2] == ["pip", "install"], f"not simulated: {shlex.join(argv)}"
    targets = [a for a in argv[2:] if not a.startswith("-")]
    assert len(targets) == 1, f"one requirement expected: {shlex.join(argv)}"
    found = re.fullmatch(r"([^\[\]]+)(?:\[([\w,\s-]+)\])?", targets[0])
    assert found and found.group(1).rstrip("/") in copies, (
        f"{targets[0]}: not a folder COPY put into the image (the package index has no "
        "embctl)")
    extras = [x.strip() for x in (found.group(2) or "").split(",") if x.strip()]
    image.venv.install([a for a in argv[2:] if a.startswith("-")],
                       copies[found.group(1).rstrip("/")], extras)


def build(steps: list[tuple[str, str]], *, context: Path, root: Path, venv: CachedVenv,
          build_args: dict[str, str] | None = None) -> Image:
    """Play ``steps`` (from `parse`) as ``docker build --build-arg ...`` would."""
    image, args = Image(root=root, venv=venv), {}
    unused, copies = dict(build_args or {}), {}
    for word, rest in steps:
        if word == "FROM":
            assert re.fullmatch(r"python:3\.\d+(-slim)?", rest), f"FROM {rest}: not simulated"
            image.base = rest
        elif word == "ARG":
            name, eq, default = rest.partition("=")
            if name in unused:
                args[name] = unused.pop(name)
            elif eq:
                args[name] = default
        elif word == "ENV":
            pairs = shlex.split(rest)
            assert all("=" in p for p in pairs), f"ENV {rest}: use the K=V form"
            image.env.update(p.split("=", 1) for p in pairs)
        elif word == "COPY":
            src, dest = shlex.split(rest)
            assert src == ".", f"COPY {rest}: only the whole context is simulated"
            target = root / dest.lstrip("/")
            image.copied[dest.rstrip("/")] = copy_context(context, target)
            copies[dest.rstrip("/")] = target
        elif word == "RUN":
            tokens = _shell_words(rest)
            commands = [[]]
            for token in tokens:
                if token == "&&":
                    commands.append([])
                else:
                    commands[-1].append(token)
            for argv in commands:
                argv = [_mapped(a, copies) for a in argv] if argv[0] != "pip" else argv
                if argv[0] == "pip":
                    _install(image, argv, copies)
                    continue
                proc = image.exec(argv, args=args)
                image.runs.append(proc)
                assert proc.returncode == 0, f"RUN {shlex.join(argv)}:\n{proc.stderr}"
        elif word == "ENTRYPOINT":
            image.entrypoint = json.loads(rest)
        else:
            raise AssertionError(f"{word} {rest}: not simulated; teach support/recipe.py")
    assert not unused, f"build args the Dockerfile never declares (ARG): {sorted(unused)}"
    return image


def _shell_words(command: str) -> list[str]:
    """The words of a shell command, its ``# comment`` dropped; ``&&`` is the one operator
    simulated (a pipe, a redirection or an expansion raises)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    operators = [w for w in words if w and set(w) <= set("();<>|&") and w != "&&"]
    assert not operators and "$" not in command and "`" not in command, (
        f"RUN {command}: shell syntax beyond && is not simulated")
    return words


def _mapped(arg: str, copies: dict[str, Path]) -> str:
    for dest, target in copies.items():
        if arg == dest or arg.startswith(dest + "/"):
            return str(target) + arg[len(dest):]
    return arg
