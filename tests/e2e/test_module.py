"""The built module: it exports only the proxy-wasm callbacks jwt-guard uses.

Envoy calls every callback a module exports and skips the others, so each callback the
build leaves in (response headers, log, done, ...) costs a call into V8 per request for
nothing. `make build` trims them (tools/trim-exports); this pins the result, and the rest
of the suite proves that the trimmed module still does everything."""

from harness import MODULE

# What src/filter.rs implements (Makefile, CALLBACKS), plus what the SDK needs.
CALLBACKS = {
    "proxy_on_vm_start", "proxy_on_configure", "proxy_on_tick",
    "proxy_on_http_call_response", "proxy_on_context_create", "proxy_on_request_headers",
    "proxy_on_request_body", "proxy_on_request_trailers", "proxy_on_delete",
    "proxy_on_memory_allocate",
}


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def exported_names(data: bytes) -> set[str]:
    """Names in the module's export section (section id 7)."""
    assert data[:8] == b"\0asm\x01\0\0\0", "not a wasm module, version 1"
    at = 8
    while at < len(data):
        section, size_at = data[at], at + 1
        size, body = _leb128(data, size_at)
        if section == 7:
            count, at = _leb128(data, body)
            names = set()
            for _ in range(count):
                length, at = _leb128(data, at)
                names.add(data[at:at + length].decode())
                _, at = _leb128(data, at + length + 1)  # kind byte, then index
            return names
        at = body + size
    return set()


def test_module_exports_only_the_callbacks_the_filter_uses(module_path):
    names = exported_names(MODULE.read_bytes())
    callbacks = {n for n in names if n.startswith("proxy_on_")}
    assert callbacks == CALLBACKS, (callbacks - CALLBACKS, CALLBACKS - callbacks)
    assert {"memory", "_initialize", "proxy_abi_version_0_2_1"} <= names, names
