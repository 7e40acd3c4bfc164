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

// Two callers in one test binary never get the same address, as a child's
// HTTP and admin addresses picked one after the other once did: among 2000
// random ports of 12000, some would repeat.
func TestFreeAddrNeverRepeatsAnAddress(t *testing.T) {
	seen := map[string]bool{}
	for i := range 2000 {
		addr := FreeAddr(t)
		if seen[addr] {
			t.Fatalf("call %d: FreeAddr() = %s again", i, addr)
		}
		seen[addr] = true
	}
}
