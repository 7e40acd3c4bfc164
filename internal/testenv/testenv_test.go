package testenv

import (
	"net"
	"strconv"
	"testing"
)

// FreeAddr's ports are below the ephemeral range, so no outgoing
// connection takes one before its listener binds it, and free.
func TestFreeAddrIsBelowTheEphemeralRange(t *testing.T) {
	for range 20 {
		addr := FreeAddr(t)
		_, p, err := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		if err != nil || port < 20000 || port >= 32000 {
			t.Fatalf("FreeAddr() = %q, want a port in [20000, 32000)", addr)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		l.Close()
	}
}
