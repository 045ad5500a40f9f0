package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// claimLoopbackAddress reserves a loopback address for one DC for the life of this process.
// Test binaries of different packages run in parallel, so the claim is an flock on a file per
// address: the kernel drops it when the process dies, so a crashed test never leaks a claim.
func claimLoopbackAddress(want string) (string, *os.File, error) {
	dir := filepath.Join(os.TempDir(), "dkm-operator-loopback")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	candidates := []string{want}
	if want == "" {
		candidates = candidates[:0]
		for i := 1; i < 255; i++ {
			candidates = append(candidates, fmt.Sprintf("127.0.10.%d", i))
		}
	}
	for _, addr := range candidates {
		if ip := net.ParseIP(addr); ip == nil || !ip.IsLoopback() {
			return "", nil, fmt.Errorf("%q is not a loopback address: test servers listen on 127.0.0.0/8 only", addr)
		}
		f, err := os.OpenFile(filepath.Join(dir, addr+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return "", nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			_ = f.Close()
			continue
		}
		if !portsFree(addr) {
			_ = f.Close()
			continue
		}
		return addr, f, nil
	}
	return "", nil, fmt.Errorf("no free loopback address for a Samba DC among %d candidates", len(candidates))
}

// portsFree reports whether Samba's LDAP ports are free on addr (something outside our claims,
// such as a DC left by an older run, may hold them).
func portsFree(addr string) bool {
	for _, port := range []string{"389", "636", "3268", "3269"} {
		l, err := net.Listen("tcp", net.JoinHostPort(addr, port))
		if err != nil {
			return false
		}
		_ = l.Close()
	}
	return true
}

// ensureOnLoopback assigns addr to the lo interface if it is not there yet. Linux routes all of
// 127.0.0.0/8 to lo, but Samba binds only to addresses an interface carries, and by default lo
// carries 127.0.0.1 alone. It reports whether it added the address, so Close can remove it.
func ensureOnLoopback(addr string) (added bool, err error) {
	ifc, err := net.InterfaceByName("lo")
	if err != nil {
		return false, fmt.Errorf("finding the loopback interface: %w", err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(net.ParseIP(addr)) {
			return false, nil
		}
	}
	out, err := exec.Command("ip", "addr", "add", addr+"/32", "dev", "lo").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "File exists") {
		return false, fmt.Errorf("adding %s to lo (needs root and iproute2): %v: %s", addr, err, out)
	}
	return err == nil, nil
}

func removeFromLoopback(addr string) {
	_ = exec.Command("ip", "addr", "del", addr+"/32", "dev", "lo").Run()
}
