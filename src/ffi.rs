//! C ABI (SPEC §6). Stub until the C ABI work lands.
