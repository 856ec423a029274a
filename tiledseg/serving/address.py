"""Parse ``grpc[s]://HOST:PORT[,HOST:PORT...]/MODEL[?version=N|label=L&signature=S]``.

``grpc://`` is plaintext; ``grpcs://`` is TLS (the server's certificate checked against the
system's roots or a given CA file). No gRPC or TensorFlow here, so the CLI can check a URL
before importing either.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from dataclasses import dataclass

from tiledseg._validation import validate_range

__all__ = ["DEFAULT_PORT", "DEFAULT_SIGNATURE", "ServingAddress", "parse_serving_url"]

DEFAULT_PORT = 8500  # TF Serving's gRPC port (8501 is its REST port)
DEFAULT_SIGNATURE = "serving_default"
REST_PORT = 8501  # TF Serving's REST port: a URL with it was probably copied from a REST client
_SCHEME, _TLS_SCHEME = "grpc", "grpcs"
_QUERY_KEYS = ("version", "label", "signature")
_FORM = "grpc[s]://HOST:PORT/MODEL_NAME[?version=N|label=L&signature=serving_default]"


@dataclass(frozen=True)
class ServingAddress:
    """Where a served model is and which of its versions and signatures to call.

    Attributes:
        endpoints: tuple of ``(host, port)``; with several, calls go round-robin over them.
        model_name: str, the name the server loaded the model under.
        version: int or None, a fixed version (None: the latest the server has).
        version_label: str or None, a label from the server's ``models.config``.
        signature: str, the SignatureDef to call.
        tls: bool, whether the channel is TLS (``grpcs://``).
    """

    endpoints: tuple[tuple[str, int], ...]
    model_name: str
    version: int | None = None
    version_label: str | None = None
    signature: str = DEFAULT_SIGNATURE
    tls: bool = False

    @property
    def targets(self) -> list[str]:
        """gRPC targets, ``host:port`` (IPv6 hosts in brackets)."""
        return [_target(host, port) for host, port in self.endpoints]

    @classmethod
    def from_target(
        cls,
        target: str,
        *,
        model_name: str | None = None,
        version: int | None = None,
        version_label: str | None = None,
        signature: str | None = None,
    ) -> ServingAddress:
        """Build an address from a URL or ``HOST:PORT`` plus keyword arguments.

        Args:
            target: str, a ``grpc://`` or ``grpcs://`` URL (see :func:`parse_serving_url`) or
                ``HOST[:PORT]`` (plaintext).
            model_name, version, version_label, signature: each None (from the URL) or a value;
                required for ``model_name`` with ``HOST:PORT``. A value the URL also gives
                differently is an error.

        Returns:
            A :class:`ServingAddress`.

        Raises:
            ValueError, TypeError: a bad URL, a missing name, or conflicting values.

        Example:
            >>> ServingAddress.from_target("localhost:8500", model_name="unet").url()
            'grpc://localhost:8500/unet'
        """
        if not isinstance(target, str) or not target.strip():
            raise TypeError(f"`target` must be a grpc:// URL or HOST:PORT. Received: {target!r}")
        if "://" in target:  # a URL: grpc:// and grpcs:// parse, any other scheme is explained
            address = parse_serving_url(target)
        elif not model_name:
            raise ValueError(
                "`model_name` is required when `target` is HOST:PORT; or pass "
                f"grpc://{target}/MODEL_NAME. Received: target={target!r}"
            )
        else:
            address = parse_serving_url(f"{_SCHEME}://{target}/{model_name}")
        given = {
            "model_name": model_name,
            "version": version,
            "version_label": version_label,
            "signature": signature,
        }
        values = {}
        for key, value in given.items():
            if value is None:
                continue
            current = getattr(address, key)
            unset = DEFAULT_SIGNATURE if key == "signature" else None
            if current not in (unset, value):
                raise ValueError(
                    f"`{key}`={value!r} disagrees with the URL's {current!r}. Give it once. "
                    f"Received: target={target!r}"
                )
            values[key] = value
        if "version" in values:
            validate_range(values["version"], "version", low=0, integer=True)
        address = dataclasses.replace(address, **values)
        if address.version is not None and address.version_label is not None:
            raise ValueError(
                "Give `version` or `version_label`, not both. "
                f"Received: version={address.version}, version_label={address.version_label!r}"
            )
        return address

    def url(self) -> str:
        """The address written back as a ``grpc://`` (or ``grpcs://``) URL."""
        query = {}
        if self.version is not None:
            query["version"] = str(self.version)
        if self.version_label is not None:
            query["label"] = self.version_label
        if self.signature != DEFAULT_SIGNATURE:
            query["signature"] = self.signature
        tail = f"?{urllib.parse.urlencode(query)}" if query else ""
        scheme = _TLS_SCHEME if self.tls else _SCHEME
        return f"{scheme}://{','.join(self.targets)}/{self.model_name}{tail}"


def parse_serving_url(url: str) -> ServingAddress:
    """Parse a TF Serving URL.

    Args:
        url: str, ``grpc://HOST[:PORT][,HOST[:PORT]...]/MODEL_NAME`` (plaintext) or
            ``grpcs://...`` (TLS), with an optional query ``version=N`` or ``label=L`` (not
            both) and ``signature=NAME``. PORT defaults to 8500; IPv6 hosts are written in
            brackets (``grpc://[::1]:8500/unet``).

    Returns:
        A :class:`ServingAddress`.

    Raises:
        ValueError: the URL is not of that form; the message shows the form and the URL (and
            for an ``http(s)://`` URL, the gRPC URL it probably means).

    Example:
        >>> parse_serving_url("grpc://serving:8500/unet-isic2017?version=3").version
        3
        >>> parse_serving_url("grpcs://serving.example.org/unet").tls
        True
    """
    if not isinstance(url, str):
        raise TypeError(f"`url` must be a string {_FORM}. Received: url={url!r}")
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme in ("http", "https"):
        raise ValueError(
            "TF Serving is reached over gRPC, not HTTP: write "
            f"{_grpc_equivalent(parts)} (grpc:// is plaintext, grpcs:// TLS; 8500 is TF "
            f"Serving's gRPC port, {REST_PORT} its REST port). Received: {url!r}"
        )
    if parts.scheme not in (_SCHEME, _TLS_SCHEME):
        raise ValueError(
            f"A serving URL must start with grpc:// (or grpcs:// for TLS), as in {_FORM}. "
            f"Received: {url!r}"
        )
    if not parts.netloc:
        raise ValueError(f"A serving URL needs a host, as in {_FORM}. Received: {url!r}")
    endpoints = tuple(_endpoint(item, url) for item in parts.netloc.split(","))
    model_name = parts.path.strip("/")
    if not model_name or "/" in model_name:
        raise ValueError(
            f"A serving URL needs one model name after the host, as in {_FORM}. Received: {url!r}"
        )
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - set(_QUERY_KEYS))
    if unknown:
        raise ValueError(
            f"Unknown serving URL parameter(s) {unknown}; allowed: {list(_QUERY_KEYS)}. "
            f"Received: {url!r}"
        )
    values = {}
    for key, items in query.items():
        if len(items) != 1 or not items[0]:
            raise ValueError(f"`{key}` must be given once, with a value. Received: {url!r}")
        values[key] = items[0]
    version = values.get("version")
    if version is not None:
        if not version.isdigit():
            raise ValueError(f"`version` must be a whole number >= 0. Received: {url!r}")
        version = int(version)
    label = values.get("label")
    if version is not None and label is not None:
        raise ValueError(f"Give `version` or `label`, not both. Received: {url!r}")
    return ServingAddress(
        endpoints,
        model_name,
        version,
        label,
        values.get("signature", DEFAULT_SIGNATURE),
        tls=parts.scheme == _TLS_SCHEME,
    )


def _grpc_equivalent(parts: urllib.parse.SplitResult) -> str:
    """The gRPC URL an ``http(s)://`` TF Serving URL (REST form or not) most likely means."""
    scheme = _TLS_SCHEME if parts.scheme == "https" else _SCHEME
    host = parts.hostname or "HOST"
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    port = DEFAULT_PORT if port in (None, REST_PORT) else port
    # REST paths look like /v1/models/NAME[/versions/N][:predict].
    path = [part for part in parts.path.split("/") if part]
    if len(path) >= 3 and path[0] == "v1" and path[1] == "models":
        path = [path[2]]
    name = path[0].split(":")[0] if len(path) == 1 else "MODEL_NAME"
    return f"{scheme}://{host}:{port}/{name or 'MODEL_NAME'}"


def _endpoint(item: str, url: str) -> tuple[str, int]:
    host, port = item, ""
    if item.startswith("["):  # [IPv6]:port
        close = item.find("]")
        if close < 0:
            raise ValueError(f"Unclosed '[' in the host of {url!r}")
        host, rest = item[1:close], item[close + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"Expected ':PORT' after ']' in {url!r}")
        port = rest[1:]
    elif ":" in item:
        host, port = item.rsplit(":", 1)
    if not host:
        raise ValueError(f"Empty host in {url!r}; the form is {_FORM}")
    if not port:
        return host, DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"The port must be a number in [1, 65535]. Received: {port!r} in {url!r}")
    return host, int(port)


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
