"""A client of containerd's gRPC API: namespaces, images and image events.

It speaks containerd's own API, described by containerd's own `.proto` files
(API 1.6, which containerd 1.6 and 1.7 both serve: `services/images/v1`,
`services/events/v1`, `services/namespaces/v1` and `events/image.proto`).
Those files are not part of imageledger: on first use `grpc_tools.protoc`
compiles them from a protos root (Debian's `golang-github-containerd-containerd-dev`
and `golang-github-gogo-protobuf-dev` install one at /usr/share/gocode/src)
into one `FileDescriptorSet`, cached under a name keyed by the sha256 of the
files, and the message classes are built from it at run time. No generated
module is written or imported, so nothing goes stale: new protos, new key.

The field numbers used here are checked against that pinned version when the
set is loaded; a protos root that does not match fails with a clear error.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imageledger.infrastructure.errors import ContainerdError

DEFAULT_ADDRESS = "/run/containerd/containerd.sock"
DEFAULT_PROTOS = "/usr/share/gocode/src"
PROTOS_ENV = "IMAGELEDGER_CONTAINERD_PROTOS"
API_VERSION = "1.6"

IMAGE_TOPICS = ("/images/create", "/images/update", "/images/delete")

_CONTAINERD = "github.com/containerd/containerd"
# The files compiled: the services used and the events decoded. Their imports
# (types/descriptor.proto, gogo.proto, fieldpath.proto) come in with them.
SERVICE_PROTOS = (
    f"{_CONTAINERD}/api/services/images/v1/images.proto",
    f"{_CONTAINERD}/api/services/events/v1/events.proto",
    f"{_CONTAINERD}/api/services/namespaces/v1/namespace.proto",
    f"{_CONTAINERD}/api/events/image.proto",
)
_IMPORTED_PROTOS = (
    f"{_CONTAINERD}/api/types/descriptor.proto",
    f"{_CONTAINERD}/protobuf/plugin/fieldpath.proto",
    "github.com/gogo/protobuf/gogoproto/gogo.proto",
)
# gogo.proto is imported as "gogoproto/gogo.proto", relative to this folder.
_GOGO_ROOT = "github.com/gogo/protobuf"

# The fields read or written, by message: name -> number, as API 1.6 has them.
PINNED_FIELDS: dict[str, dict[str, int]] = {
    "containerd.services.images.v1.Image": {"name": 1, "labels": 2, "target": 3},
    "containerd.types.Descriptor": {
        "media_type": 1,
        "digest": 2,
        "size": 3,
        "annotations": 5,
    },
    "containerd.services.images.v1.GetImageRequest": {"name": 1},
    "containerd.services.images.v1.GetImageResponse": {"image": 1},
    "containerd.services.images.v1.ListImagesRequest": {"filters": 1},
    "containerd.services.images.v1.ListImagesResponse": {"images": 1},
    "containerd.services.images.v1.CreateImageRequest": {"image": 1},
    "containerd.services.images.v1.CreateImageResponse": {"image": 1},
    "containerd.services.events.v1.SubscribeRequest": {"filters": 1},
    "containerd.services.events.v1.Envelope": {
        "timestamp": 1,
        "namespace": 2,
        "topic": 3,
        "event": 4,
    },
    "containerd.services.namespaces.v1.ListNamespacesRequest": {"filter": 1},
    "containerd.services.namespaces.v1.ListNamespacesResponse": {"namespaces": 1},
    "containerd.services.namespaces.v1.Namespace": {"name": 1},
    # events/image.proto: package containerd.services.images.v1 in 1.6,
    # containerd.events from 1.7 on; the messages are the same.
    "ImageCreate": {"name": 1, "labels": 2},
    "ImageUpdate": {"name": 1, "labels": 2},
    "ImageDelete": {"name": 1},
}
_EVENT_PACKAGES = ("containerd.events", "containerd.services.images.v1")

# Caps on what is read from outside: the compiled set from the cache, and any
# one gRPC message from containerd (an Images.List of a very large store fits).
MAX_DESCRIPTOR_SET_BYTES = 4 * 1024 * 1024
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_PROTO_BYTES = 1024 * 1024

_NAMESPACE_HEADER = "containerd-namespace"


@dataclass(frozen=True)
class ContainerdImage:
    """An image record as containerd reports it: its target as OCI JSON."""

    name: str
    target: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageEvent:
    """One image event: its namespace, topic (`/images/create`, ...) and name."""

    namespace: str
    topic: str
    name: str
    timestamp: float


# The API: compile, cache, load.


def protos_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The protos root to use: `root`, else $IMAGELEDGER_CONTAINERD_PROTOS,
    else Debian's /usr/share/gocode/src."""
    chosen = root or os.environ.get(PROTOS_ENV) or DEFAULT_PROTOS
    return Path(chosen)


def protos_key(root: Path) -> str:
    """The sha256 over the names and bytes of every proto file compiled."""
    digest = hashlib.sha256(API_VERSION.encode())
    for relative in (*SERVICE_PROTOS, *_IMPORTED_PROTOS):
        path = root / relative
        try:
            with path.open("rb") as file:
                data = file.read(MAX_PROTO_BYTES + 1)
        except OSError as e:
            raise ContainerdError(
                f"containerd's API protos are not under {str(root)!r}: "
                f"cannot read {relative!r} ({e.strerror}); install Debian's "
                "golang-github-containerd-containerd-dev and "
                "golang-github-gogo-protobuf-dev, or give --protos "
                f"(or ${PROTOS_ENV})"
            ) from e
        if len(data) > MAX_PROTO_BYTES:
            raise ContainerdError(f"{relative!r} is larger than a proto file can be")
        digest.update(relative.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where compiled sets are kept: $XDG_CACHE_HOME/imageledger (or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache"
    )
    return Path(base) / "imageledger"


def compile_protos(root: Path) -> bytes:
    """containerd's API protos under `root`, compiled with grpc_tools.protoc
    into a serialised FileDescriptorSet (with every import)."""
    try:
        from grpc_tools import protoc
    except ImportError as e:
        raise ContainerdError(
            "following containerd needs the containerd extra: "
            "pip install 'imageledger[containerd]'"
        ) from e
    import importlib.resources

    well_known = importlib.resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory(prefix="imageledger-protoc-") as scratch:
        out = os.path.join(scratch, "containerd.pb")
        arguments = [
            "grpc_tools.protoc",
            f"--proto_path={root}",
            f"--proto_path={root / _GOGO_ROOT}",
            f"--proto_path={well_known}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            *SERVICE_PROTOS,
        ]
        if protoc.main(arguments) != 0:
            raise ContainerdError(
                f"grpc_tools.protoc could not compile containerd's protos under "
                f"{str(root)!r}"
            )
        with open(out, "rb") as file:
            return file.read(MAX_DESCRIPTOR_SET_BYTES + 1)


def _read_cached(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_DESCRIPTOR_SET_BYTES + 1)
    return data if len(data) <= MAX_DESCRIPTOR_SET_BYTES else None


def _write_cached(path: Path, data: bytes) -> None:
    """Write the set beside `path` under a new name, then rename it into place:
    never through a symbolic link, never half-written. A cache that cannot be
    written is not an error (the set is compiled again next time)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.parent.is_symlink():
            return
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temporary, flags, 0o600)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)
    except OSError:
        return


class Api:
    """containerd's message classes, built from a compiled FileDescriptorSet."""

    def __init__(self, descriptor_set: bytes) -> None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        from google.protobuf.message import DecodeError

        files = descriptor_pb2.FileDescriptorSet()
        try:
            files.ParseFromString(descriptor_set)
        except DecodeError as e:
            raise ContainerdError("the compiled containerd API is damaged") from e
        pool = descriptor_pool.DescriptorPool()
        for file in files.file:
            pool.Add(file)
        self._classes: dict[str, Any] = {}
        for message, fields in PINNED_FIELDS.items():
            found = _find(pool, message)
            numbers = {f.name: f.number for f in found.fields}
            for name, number in fields.items():
                if numbers.get(name) != number:
                    raise ContainerdError(
                        f"the protos are not containerd API {API_VERSION}: "
                        f"{message}.{name} is not field {number}"
                    )
            self._classes[message] = message_factory.GetMessageClass(found)

    def __getitem__(self, message: str) -> Any:
        return self._classes[message]


def _find(pool: Any, message: str) -> Any:
    names = (
        [message]
        if "." in message
        else [f"{package}.{message}" for package in _EVENT_PACKAGES]
    )
    for name in names:
        try:
            return pool.FindMessageTypeByName(name)
        except KeyError:
            continue
    raise ContainerdError(
        f"the protos are not containerd API {API_VERSION}: no message {names[0]}"
    )


def load_api(root: str | os.PathLike[str] | None = None) -> Api:
    """containerd's API from the protos under `root` (see `protos_root`),
    compiled once per distinct set of proto files and cached."""
    folder = protos_root(root)
    cached = cache_dir() / f"containerd-api-{protos_key(folder)}.pb"
    data = _read_cached(cached)
    if data is not None:
        try:
            return Api(data)
        except ContainerdError:
            pass  # a damaged cache entry: compile again and replace it
    data = compile_protos(folder)
    api = Api(data)
    _write_cached(cached, data)
    return api


# The client.


class Client:
    """A connection to one containerd socket."""

    def __init__(self, address: str, api: Api, *, timeout: float = 10.0) -> None:
        import grpc

        self.address = address
        self._api = api
        self._timeout = timeout
        self._channel = grpc.insecure_channel(
            f"unix:{address}",
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.enable_retries", 0),
            ],
        )
        self._calls: dict[str, Any] = {}

    def close(self) -> None:
        self._channel.close()

    def namespaces(self) -> list[str]:
        """Every namespace containerd has, sorted."""
        request = self._api["containerd.services.namespaces.v1.ListNamespacesRequest"]
        response = self._unary(
            "/containerd.services.namespaces.v1.Namespaces/List",
            "containerd.services.namespaces.v1.ListNamespacesResponse",
            request(),
            None,
        )
        return sorted(namespace.name for namespace in response.namespaces)

    def images(self, namespace: str) -> list[ContainerdImage]:
        """Every image of `namespace`, as Images.List reports it."""
        request = self._api["containerd.services.images.v1.ListImagesRequest"]
        response = self._unary(
            "/containerd.services.images.v1.Images/List",
            "containerd.services.images.v1.ListImagesResponse",
            request(),
            namespace,
        )
        return [_image(image) for image in response.images]

    def image(self, namespace: str, name: str) -> ContainerdImage | None:
        """The image `name` of `namespace`, or None if containerd has none."""
        request = self._api["containerd.services.images.v1.GetImageRequest"]
        try:
            response = self._unary(
                "/containerd.services.images.v1.Images/Get",
                "containerd.services.images.v1.GetImageResponse",
                request(name=name),
                namespace,
                not_found=True,
            )
        except _NotFound:
            return None
        if not response.HasField("image"):
            return None
        return _image(response.image)

    def create(
        self,
        namespace: str,
        name: str,
        target: Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Create the image `name` (Images.Create): for tests and the bench."""
        image = self._api["containerd.services.images.v1.Image"](
            name=name,
            labels=dict(labels or {}),
            target=self._api["containerd.types.Descriptor"](
                media_type=target["mediaType"],
                digest=target["digest"],
                size=target["size"],
                annotations=dict(target.get("annotations") or {}),
            ),
        )
        request = self._api["containerd.services.images.v1.CreateImageRequest"]
        self._unary(
            "/containerd.services.images.v1.Images/Create",
            "containerd.services.images.v1.CreateImageResponse",
            request(image=image),
            namespace,
        )

    def subscribe(self, namespaces: tuple[str, ...] = ()) -> Subscription:
        """Image events from now on, of `namespaces` (all when empty)."""
        topics = 'topic~="^/images/"'
        filters = (
            [f"{topics},namespace=={namespace}" for namespace in namespaces]
            if namespaces
            else [topics]
        )
        request = self._api["containerd.services.events.v1.SubscribeRequest"]
        envelope = self._api["containerd.services.events.v1.Envelope"]
        call = self._channel.unary_stream(
            "/containerd.services.events.v1.Events/Subscribe",
            request_serializer=_serialise,
            response_deserializer=envelope.FromString,
        )(request(filters=filters))
        return Subscription(call, self._api, self.address)

    def _unary(
        self,
        method: str,
        response: str,
        request: Any,
        namespace: str | None,
        *,
        not_found: bool = False,
    ) -> Any:
        import grpc

        call = self._calls.get(method)
        if call is None:
            call = self._channel.unary_unary(
                method,
                request_serializer=_serialise,
                response_deserializer=self._api[response].FromString,
            )
            self._calls[method] = call
        metadata = ((_NAMESPACE_HEADER, namespace),) if namespace else None
        try:
            return call(request, metadata=metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            if not_found and e.code() == grpc.StatusCode.NOT_FOUND:
                raise _NotFound from e
            raise ContainerdError(_describe(e, self.address)) from e


class Subscription:
    """An open Events.Subscribe stream; iterate for ImageEvents, `cancel()` to end.

    Iteration raises ContainerdError when the stream breaks (containerd stopped)
    and ends when cancelled."""

    def __init__(self, call: Any, api: Api, address: str) -> None:
        self._call = call
        self._address = address
        # Keyed by the type's last name: 1.6 and 1.7 put them in different packages.
        self._payloads = {
            kind: api[kind] for kind in ("ImageCreate", "ImageUpdate", "ImageDelete")
        }

    def cancel(self) -> None:
        self._call.cancel()

    def __iter__(self) -> Iterator[ImageEvent]:
        import grpc
        from google.protobuf.message import DecodeError

        try:
            for envelope in self._call:
                kind = envelope.event.type_url.rpartition(".")[2]
                payload = self._payloads.get(kind)
                if payload is None or envelope.topic not in IMAGE_TOPICS:
                    continue
                try:
                    event = payload.FromString(envelope.event.value)
                except DecodeError:
                    continue  # not an image event we can read: reconcile covers it
                yield ImageEvent(
                    namespace=envelope.namespace,
                    topic=envelope.topic,
                    name=event.name,
                    timestamp=envelope.timestamp.seconds
                    + envelope.timestamp.nanos / 1e9,
                )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise ContainerdError(_describe(e, self._address)) from e


class _NotFound(Exception):
    pass


def _serialise(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return data


def _image(image: Any) -> ContainerdImage:
    target: dict[str, Any] = {
        "mediaType": image.target.media_type,
        "digest": image.target.digest,
        "size": image.target.size,
    }
    if image.target.annotations:
        target["annotations"] = dict(image.target.annotations)
    return ContainerdImage(name=image.name, target=target, labels=dict(image.labels))


def _describe(error: Any, where: str) -> str:
    details = error.details() or error.code().name
    return f"containerd at {where!r}: {details}"
