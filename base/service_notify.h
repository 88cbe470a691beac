#pragma once
// Readiness for a service manager: systemd's notify protocol (sd_notify(3)), for units of
// Type=notify. A datagram "READY=1" etc. to the AF_UNIX socket named by $NOTIFY_SOCKET; the
// protocol is stable and documented for reimplementation, so no libsystemd for one sendto().
#include <string_view>

namespace ublkrdma {

// Sends `state` ("READY=1", "STOPPING=1", "STATUS=...") when $NOTIFY_SOCKET is set; true if
// sent. Without a service manager (the variable unset) nothing happens. Thread-safe.
bool service_notify(std::string_view state);

// Once ready: sends READY=1 and unsets $NOTIFY_SOCKET, so that processes this one starts later
// (a device's detached daemon) do not speak for the service.
void service_ready();

}  // namespace ublkrdma
