"""The Asterisk lab (``docker-compose.yml`` + ``docker/asterisk/``) keeps the guide's contract.

Our CI has no Docker engine, so the lab never runs here: these tests read its files instead.
``docker-compose.yml`` is parsed with PyYAML when it is installed (it is not a dependency of
sipx), else with a small YAML-subset reader below. The Asterisk ``.conf`` files are parsed
with Asterisk's own rules (sections ``[name]``, templates ``[name](!)`` and
``[name](tpl,...)``, ``key = value`` and ``key => value``, ``;`` comments), and the contract
is checked on the result:

* the container is called ``sipx-asterisk``, built from ``docker/asterisk``, on the host's
  network or with 5060/udp, 5060/tcp and the RTP range published;
* PJSIP has UDP and TCP transports on port 5060;
* endpoints 1111, 2222, 3333 exist with auths (username, password ``<user>xxx``, realm
  ``asterisk``) and aors;
* in the endpoints' dialplan context extension 100 answers and runs Echo(), and 1111, 2222,
  3333 Dial() the matching PJSIP endpoint; MESSAGE goes to a context that MessageSend()s to
  ``pjsip:${EXTEN}``.

Each check returns a list of problems, so the last tests can show that a broken
configuration (a wrong password, a missing Echo) is caught.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
LAB = ROOT / "docker" / "asterisk"
CONF_FILES = ("pjsip.conf", "extensions.conf", "modules.conf", "rtp.conf", "logger.conf")

CONTAINER_NAME = "sipx-asterisk"
REALM = "asterisk"
USERS = {"1111": "1111xxx", "2222": "2222xxx", "3333": "3333xxx"}
SIP_PORT = 5060
# Modules the lab cannot work without; modules.conf must not switch them off.
REQUIRED_MODULES = (
    "chan_pjsip.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "res_pjsip_registrar.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_messaging.so",
    "res_pjsip_endpoint_identifier_user.so",
    "app_echo.so",
    "app_dial.so",
    "pbx_config.so",
    "res_rtp_asterisk.so",
)


# --------------------------------------------------------------------------------------- #
# Asterisk configuration files
# --------------------------------------------------------------------------------------- #
class ConfError(ValueError):
    pass


@dataclass
class Section:
    name: str
    line: int
    is_template: bool = False
    templates: list[str] = field(default_factory=list)
    options: list[tuple[str, str]] = field(default_factory=list)


_SECTION_RE = re.compile(r"\[([^\[\]]+)\](?:\(([^()]*)\))?")
_OPTION_RE = re.compile(r"([A-Za-z0-9_.\-]+)\s*(=>|=)\s*(.*)")


def _strip_comment(line: str) -> str:
    """Drop a ``;`` comment (``\\;`` is a literal semicolon)."""
    out = []
    escaped = False
    for char in line:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            out.append(char)
            escaped = True
        elif char == ";":
            break
        else:
            out.append(char)
    return "".join(out).replace("\\;", ";").strip()


def parse_conf(text: str, where: str = "conf") -> list[Section]:
    """Sections in file order (a name may repeat: pjsip.conf has ``[1111]`` per type)."""
    sections: list[Section] = []
    current: Section | None = None
    in_block_comment = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw
        if in_block_comment:
            if "--;" not in line:
                continue
            line = line.split("--;", 1)[1]
            in_block_comment = False
        if ";--" in line:
            before, _, after = line.partition(";--")
            if "--;" in after:
                line = before + after.split("--;", 1)[1]
            else:
                line = before
                in_block_comment = True
        line = _strip_comment(line)
        if not line:
            continue
        if line.startswith("#"):
            raise ConfError(f"{where}:{number}: #include/#exec is not used by the lab: {raw!r}")
        match = _SECTION_RE.fullmatch(line)
        if match is not None:
            name, flags = match.group(1).strip(), match.group(2)
            current = Section(name, number)
            for flag in (f.strip() for f in (flags or "").split(",")):
                if not flag:
                    continue
                if flag == "!":
                    current.is_template = True
                elif flag == "+":
                    raise ConfError(f"{where}:{number}: [name](+) is not used by the lab")
                else:
                    current.templates.append(flag)
            sections.append(current)
            continue
        match = _OPTION_RE.fullmatch(line)
        if match is None:
            raise ConfError(f"{where}:{number}: not a section or an option: {raw!r}")
        if current is None:
            raise ConfError(f"{where}:{number}: option before the first section: {raw!r}")
        current.options.append((match.group(1).lower(), match.group(3).strip()))
    return sections


class Conf:
    """A parsed file with template inheritance resolved as Asterisk does it."""

    def __init__(self, text: str, where: str = "conf") -> None:
        self.where = where
        self.sections = parse_conf(text, where)
        self.templates: dict[str, Section] = {}
        for section in self.sections:
            if section.is_template:
                if section.name in self.templates:
                    raise ConfError(f"{where}: template [{section.name}] defined twice")
                self.templates[section.name] = section

    def options(self, section: Section, _seen: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        """Inherited options first (templates in order, recursively), then the section's."""
        out: list[tuple[str, str]] = []
        for name in section.templates:
            if name in _seen:
                raise ConfError(f"{self.where}: template loop through [{name}]")
            template = self.templates.get(name)
            if template is None:
                raise ConfError(
                    f"{self.where}:{section.line}: [{section.name}] uses an undefined "
                    f"template ({name})"
                )
            out.extend(self.options(template, (*_seen, name)))
        out.extend(section.options)
        return out

    def objects(self) -> Iterator[tuple[Section, dict[str, list[str]]]]:
        """Every non-template section with its resolved options (key -> values in order)."""
        for section in self.sections:
            if section.is_template:
                continue
            values: dict[str, list[str]] = {}
            for key, value in self.options(section):
                values.setdefault(key, []).append(value)
            yield section, values


def last(values: dict[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[-1] if found else None


class PJSIP:
    """pjsip.conf as sorcery sees it: objects by (type, name)."""

    def __init__(self, text: str) -> None:
        self.conf = Conf(text, "pjsip.conf")
        self.objects: dict[tuple[str, str], dict[str, list[str]]] = {}
        for section, values in self.conf.objects():
            kind = last(values, "type")
            if kind is None:
                raise ConfError(f"pjsip.conf:{section.line}: [{section.name}] has no type=")
            key = (kind, section.name)
            if key in self.objects:
                raise ConfError(f"pjsip.conf:{section.line}: {kind} [{section.name}] twice")
            self.objects[key] = values

    def of_type(self, kind: str) -> dict[str, dict[str, list[str]]]:
        return {name: values for (k, name), values in self.objects.items() if k == kind}


@dataclass
class Step:
    priority: str
    app: str
    args: str


class Dialplan:
    """extensions.conf: contexts -> extension (or pattern) -> ordered steps."""

    def __init__(self, text: str) -> None:
        self.conf = Conf(text, "extensions.conf")
        self.contexts: dict[str, dict[str, list[Step]]] = {}
        for section in self.conf.sections:
            if section.is_template or section.name in ("general", "globals"):
                continue
            context = self.contexts.setdefault(section.name, {})
            current: str | None = None
            for key, value in self.conf.options(section):
                if key == "exten":
                    extension, _, rest = value.partition(",")
                    current = extension.strip()
                elif key == "same":
                    if current is None:
                        raise ConfError(f"[{section.name}]: 'same =>' before any 'exten =>'")
                    rest = value
                else:
                    continue
                priority, _, command = rest.partition(",")
                match = re.fullmatch(r"\s*([A-Za-z0-9_]+)\s*(?:\((.*)\))?\s*", command)
                if match is None:
                    raise ConfError(f"[{section.name}]: bad dialplan step {value!r}")
                context.setdefault(current, []).append(
                    Step(priority.strip(), match.group(1), match.group(2) or "")
                )

    def steps(self, context: str, number: str) -> list[Step] | None:
        """The steps that run when ``number`` is dialled in ``context`` (patterns too)."""
        extensions = self.contexts.get(context)
        if extensions is None:
            return None
        if number in extensions:
            return extensions[number]
        for pattern, steps in extensions.items():
            if pattern.startswith("_") and _pattern_regex(pattern[1:]).fullmatch(number):
                return steps
        return None


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """An Asterisk extension pattern (after the ``_``) as a regular expression."""
    out = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char in "Xx":
            out.append("[0-9]")
        elif char in "Zz":
            out.append("[1-9]")
        elif char in "Nn":
            out.append("[2-9]")
        elif char == ".":
            out.append(".+")
        elif char == "!":
            out.append(".*")
        elif char == "[":
            end = pattern.index("]", position)
            out.append("[" + pattern[position + 1 : end] + "]")
            position = end
        else:
            out.append(re.escape(char))
        position += 1
    return re.compile("".join(out))


def _bind_port(bind: str) -> int | None:
    match = re.fullmatch(r"(?:\[[0-9A-Fa-f:.]+\]|[^:]*)(?::(\d+))?", bind.strip())
    if match is None:
        return None
    return int(match.group(1)) if match.group(1) else 5060


# --------------------------------------------------------------------------------------- #
# the contract, as lists of problems
# --------------------------------------------------------------------------------------- #
def check_transports(pjsip: PJSIP) -> list[str]:
    problems = []
    protocols = {}
    for name, values in pjsip.of_type("transport").items():
        protocol = (last(values, "protocol") or "udp").lower()
        port = _bind_port(last(values, "bind") or "")
        protocols.setdefault(protocol, []).append((name, port))
    for protocol in ("udp", "tcp"):
        ports = [port for _, port in protocols.get(protocol, [])]
        if SIP_PORT not in ports:
            problems.append(f"no {protocol.upper()} transport bound to port {SIP_PORT} ({ports})")
    return problems


def check_users(pjsip: PJSIP, dialplan: Dialplan) -> list[str]:
    problems: list[str] = []
    endpoints = pjsip.of_type("endpoint")
    auths = pjsip.of_type("auth")
    aors = pjsip.of_type("aor")
    for user, password in USERS.items():
        endpoint = endpoints.get(user)
        if endpoint is None:
            problems.append(f"no endpoint {user}")
            continue
        auth_names = [n.strip() for v in endpoint.get("auth", []) for n in v.split(",")]
        matching = [
            auths[name]
            for name in auth_names
            if name in auths and last(auths[name], "username") == user
        ]
        if not matching:
            problems.append(f"endpoint {user}: no auth with username={user} ({auth_names})")
        for auth in matching:
            if last(auth, "password") != password:
                problems.append(f"endpoint {user}: password is not {password!r}")
            if last(auth, "realm") != REALM:
                problems.append(f"endpoint {user}: realm is {last(auth, 'realm')!r}, not {REALM!r}")
            if (last(auth, "auth_type") or "userpass") not in ("userpass", "digest"):
                problems.append(f"endpoint {user}: auth_type is not a plain password")
        aor_names = [n.strip() for v in endpoint.get("aors", []) for n in v.split(",")]
        if not any(name in aors for name in aor_names):
            problems.append(f"endpoint {user}: no aor ({aor_names})")
        context = last(endpoint, "context") or "default"
        problems += [f"endpoint {user}: {p}" for p in check_call_routing(dialplan, context)]
        message_context = last(endpoint, "message_context") or context
        problems += [
            f"endpoint {user}: {p}" for p in check_message_routing(dialplan, message_context)
        ]
    return problems


def check_call_routing(dialplan: Dialplan, context: str) -> list[str]:
    echo = dialplan.steps(context, "100")
    if echo is None:
        return [f"extension 100 is not in context [{context}]"]
    problems = []
    apps = [step.app.lower() for step in echo]
    if "answer" not in apps:
        problems.append(f"extension 100 in [{context}] does not Answer()")
    if "echo" not in apps:
        problems.append(f"extension 100 in [{context}] does not run Echo()")
    elif "answer" in apps and apps.index("answer") > apps.index("echo"):
        problems.append(f"extension 100 in [{context}] runs Echo() before Answer()")
    for user in USERS:
        steps = dialplan.steps(context, user) or []
        targets = [
            step.args.split(",")[0].replace("${EXTEN}", user).strip()
            for step in steps
            if step.app.lower() == "dial"
        ]
        if f"PJSIP/{user}" not in targets:
            problems.append(f"dialling {user} in [{context}] does not Dial(PJSIP/{user})")
    return problems


def check_message_routing(dialplan: Dialplan, context: str) -> list[str]:
    problems = []
    for user in USERS:
        steps = dialplan.steps(context, user)
        if steps is None:
            problems.append(f"a MESSAGE to {user} matches no extension in [{context}]")
            continue
        targets = [
            step.args.split(",")[0].replace("${EXTEN}", user).strip()
            for step in steps
            if step.app.lower() == "messagesend"
        ]
        if f"pjsip:{user}" not in targets:
            problems.append(f"a MESSAGE to {user} in [{context}] is not MessageSend(pjsip:{user})")
    return problems


def check_modules(text: str) -> list[str]:
    conf = Conf(text, "modules.conf")
    sections = {section.name: values for section, values in conf.objects()}
    modules = sections.get("modules")
    if modules is None:
        return ["modules.conf has no [modules] section"]
    problems = []
    autoload = (last(modules, "autoload") or "no").lower() in ("yes", "true", "1", "on")
    loaded = set(modules.get("load", [])) | set(modules.get("require", []))
    for module in REQUIRED_MODULES:
        if module in modules.get("noload", []):
            problems.append(f"modules.conf does not load {module}")
        elif not autoload and module not in loaded:
            problems.append(f"modules.conf (autoload=no) does not load {module}")
    return problems


def rtp_range(text: str) -> tuple[int, int]:
    conf = Conf(text, "rtp.conf")
    general = {section.name: values for section, values in conf.objects()}["general"]
    return int(last(general, "rtpstart") or 5000), int(last(general, "rtpend") or 31000)


def check_compose(compose: dict[str, Any], rtp: tuple[int, int]) -> list[str]:
    services = compose.get("services")
    if not isinstance(services, dict):
        return ["docker-compose.yml has no services mapping"]
    named = [s for s in services.values() if s.get("container_name") == CONTAINER_NAME]
    if len(named) != 1:
        return [f"no single service with container_name: {CONTAINER_NAME}"]
    service = named[0]
    problems = []
    build = service.get("build")
    context = build.get("context") if isinstance(build, dict) else build
    if context is None or (COMPOSE.parent / str(context)).resolve() != LAB.resolve():
        problems.append(f"the service is not built from docker/asterisk ({context!r})")
    if service.get("network_mode") == "host":
        if "ports" in service:
            problems.append("network_mode: host cannot publish ports")
    else:
        ports = [str(p) for p in service.get("ports") or []]
        for wanted in (f"{SIP_PORT}:{SIP_PORT}/udp", f"{SIP_PORT}:{SIP_PORT}/tcp"):
            if wanted not in ports:
                problems.append(f"port {wanted} is not published ({ports})")
        start, end = rtp
        if f"{start}-{end}:{start}-{end}/udp" not in ports:
            problems.append(f"the RTP range {start}-{end}/udp is not published ({ports})")
    return problems


def check_dockerfile(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    problems = []
    if not any(line.upper().startswith("FROM ") for line in lines):
        problems.append("the Dockerfile has no FROM")
    copied = " ".join(line for line in lines if line.upper().startswith("COPY "))
    for name in CONF_FILES:
        if name not in copied:
            problems.append(f"the Dockerfile does not copy {name} into the image")
    return problems


# --------------------------------------------------------------------------------------- #
# docker-compose.yml without PyYAML: block mappings, block lists, scalars, comments
# --------------------------------------------------------------------------------------- #
def parse_yaml_subset(text: str) -> Any:
    """Enough YAML for docker-compose.yml; anything else raises ValueError (never guesses)."""
    lines: list[tuple[int, str, int]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError(f"line {number}: tab indentation")
        stripped = _yaml_strip_comment(raw).rstrip()
        if stripped.strip():
            lines.append((len(stripped) - len(stripped.lstrip(" ")), stripped.strip(), number))
    value, position = _yaml_block(lines, 0, 0)
    if position != len(lines):
        raise ValueError(f"line {lines[position][2]}: unexpected indentation")
    return value


def _yaml_strip_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    return line


def _yaml_scalar(text: str, number: int) -> Any:
    text = text.strip()
    if text[:1] in ("{", "[", "&", "*", "!", "|", ">"):
        raise ValueError(f"line {number}: unsupported YAML construct {text!r}")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if text in ("", "~", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _yaml_block(lines: list[tuple[int, str, int]], position: int, indent: int) -> Any:
    if position >= len(lines):
        return None, position
    if lines[position][1].startswith("- ") or lines[position][1] == "-":
        items = []
        while position < len(lines) and lines[position][0] == indent:
            _, content, number = lines[position]
            if not (content.startswith("- ") or content == "-"):
                break
            item = content[1:].strip()
            if not item or re.match(r"[^\"'\s][^:]*:(\s|$)", item):
                raise ValueError(f"line {number}: only lists of scalars are supported")
            items.append(_yaml_scalar(item, number))
            position += 1
        return items, position
    mapping: dict[str, Any] = {}
    while position < len(lines) and lines[position][0] == indent:
        _, content, number = lines[position]
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+|\"[^\"]*\"|'[^']*'):(?:\s+(.*))?", content)
        if match is None:
            raise ValueError(f"line {number}: expected 'key: value', got {content!r}")
        key = _yaml_scalar(match.group(1), number)
        if key in mapping:
            raise ValueError(f"line {number}: duplicate key {key!r}")
        position += 1
        if match.group(2) is not None and match.group(2).strip():
            mapping[key] = _yaml_scalar(match.group(2), number)
        elif position < len(lines) and lines[position][0] > indent:
            mapping[key], position = _yaml_block(lines, position, lines[position][0])
        elif (
            position < len(lines)
            and lines[position][0] == indent
            and (lines[position][1].startswith("- "))
        ):
            mapping[key], position = _yaml_block(lines, position, indent)
        else:
            mapping[key] = None
    return mapping, position


def load_compose(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        return parse_yaml_subset(text)
    return yaml.safe_load(text)


# --------------------------------------------------------------------------------------- #
# tests
# --------------------------------------------------------------------------------------- #
def _read(name: str) -> str:
    return (LAB / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def pjsip() -> PJSIP:
    return PJSIP(_read("pjsip.conf"))


@pytest.fixture(scope="module")
def dialplan() -> Dialplan:
    return Dialplan(_read("extensions.conf"))


def test_lab_files_exist() -> None:
    assert COMPOSE.is_file()
    for name in ("Dockerfile", *CONF_FILES):
        assert (LAB / name).is_file(), name


@pytest.mark.parametrize("name", CONF_FILES)
def test_conf_files_parse(name: str) -> None:
    conf = Conf(_read(name), name)
    assert conf.sections, f"{name} has no sections"
    for _section, _values in conf.objects():  # templates resolve, no loops
        pass


def test_compose_parses_and_names_the_container() -> None:
    compose = load_compose(COMPOSE.read_text(encoding="utf-8"))
    assert check_compose(compose, rtp_range(_read("rtp.conf"))) == []


def test_compose_subset_reader_agrees_with_pyyaml() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (not a sipx dependency)")
    text = COMPOSE.read_text(encoding="utf-8")
    assert parse_yaml_subset(text) == yaml.safe_load(text)


def test_dockerfile_copies_every_config() -> None:
    assert check_dockerfile(_read("Dockerfile")) == []


def test_transports_udp_and_tcp_on_5060(pjsip: PJSIP) -> None:
    assert check_transports(pjsip) == []


def test_users_passwords_realm_and_routing(pjsip: PJSIP, dialplan: Dialplan) -> None:
    assert check_users(pjsip, dialplan) == []


def test_extension_100_answers_and_echoes(dialplan: Dialplan, pjsip: PJSIP) -> None:
    context = last(pjsip.of_type("endpoint")["1111"], "context") or "default"
    steps = dialplan.steps(context, "100")
    assert steps is not None
    assert [s.app for s in steps][:3] == ["NoOp", "Answer", "Echo"]


def test_modules_load_what_the_lab_needs() -> None:
    assert check_modules(_read("modules.conf")) == []


def test_rtp_range_is_small() -> None:
    start, end = rtp_range(_read("rtp.conf"))
    assert 1024 <= start < end <= 65535
    assert end - start <= 1000


def test_logger_has_a_console_channel() -> None:
    conf = Conf(_read("logger.conf"), "logger.conf")
    logfiles = {section.name: values for section, values in conf.objects()}["logfiles"]
    assert "console" in logfiles


# -- the checks can fail ------------------------------------------------------------------
def test_a_wrong_password_is_caught(dialplan: Dialplan) -> None:
    text = _read("pjsip.conf").replace("password=2222xxx", "password=2222yyy")
    assert check_users(PJSIP(text), dialplan) == ["endpoint 2222: password is not '2222xxx'"]


def test_a_wrong_realm_is_caught(dialplan: Dialplan) -> None:
    text = re.sub(r"(?m)^realm=asterisk$", "realm=sipx", _read("pjsip.conf"))
    problems = check_users(PJSIP(text), dialplan)
    assert len(problems) == len(USERS)
    assert all("realm is 'sipx'" in p for p in problems)


def test_a_missing_user_is_caught(dialplan: Dialplan) -> None:
    text = _read("pjsip.conf").replace("[3333](user-endpoint)", "[3334](user-endpoint)")
    assert "no endpoint 3333" in check_users(PJSIP(text), dialplan)


def test_a_missing_tcp_transport_is_caught() -> None:
    text = _read("pjsip.conf").replace("protocol=tcp", "protocol=udp")
    assert check_transports(PJSIP(text)) == ["no TCP transport bound to port 5060 ([])"]


def test_an_extension_100_without_echo_is_caught(pjsip: PJSIP) -> None:
    text = _read("extensions.conf").replace("same => n,Echo()", "same => n,Playback(demo)")
    problems = check_users(pjsip, Dialplan(text))
    assert "endpoint 1111: extension 100 in [users] does not run Echo()" in problems


def test_a_renamed_container_is_caught() -> None:
    text = COMPOSE.read_text(encoding="utf-8").replace(
        f"container_name: {CONTAINER_NAME}", "container_name: asterisk"
    )
    assert check_compose(load_compose(text), (10000, 10099)) == [
        f"no single service with container_name: {CONTAINER_NAME}"
    ]


def test_published_ports_are_checked_without_host_networking() -> None:
    compose = load_compose(COMPOSE.read_text(encoding="utf-8"))
    service = compose["services"]["asterisk"]
    del service["network_mode"]
    service["ports"] = ["5060:5060/udp"]
    assert check_compose(compose, (10000, 10099)) == [
        "port 5060:5060/tcp is not published (['5060:5060/udp'])",
        "the RTP range 10000-10099/udp is not published (['5060:5060/udp'])",
    ]


def test_conf_syntax_errors_are_reported() -> None:
    with pytest.raises(ConfError, match="not a section or an option"):
        parse_conf("[ok]\nthis line is broken\n")
    with pytest.raises(ConfError, match="undefined template"):
        Conf("[a](missing)\nkey=value\n").options(parse_conf("[a](missing)\nkey=value\n")[0])
    with pytest.raises(ValueError, match="unsupported YAML"):
        parse_yaml_subset("services: {a: 1}\n")
