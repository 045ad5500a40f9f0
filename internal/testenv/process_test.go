package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcessStop(t *testing.T) {
	for name, tc := range map[string]struct {
		script string
		group  bool
		// wantKilled: the process ignores SIGTERM, so Stop must kill it and say so.
		wantKilled bool
	}{
		"ends on SIGTERM":           {script: "sleep 30 & wait"},
		"ignores SIGTERM":           {script: "trap '' TERM; sleep 30 & wait; sleep 30", wantKilled: true},
		"group: children stop too":  {script: "sleep 30 & echo $! > child; wait", group: true},
		"group: killed with a fork": {script: "trap '' TERM; sleep 30 & echo $! > child; wait; sleep 30", group: true, wantKilled: true},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command("sh", "-c", tc.script)
			cmd.Dir = dir
			p, err := StartProcess(cmd, filepath.Join(dir, "log"), tc.group)
			if err != nil {
				t.Fatal(err)
			}
			child := waitChild(t, dir, tc.group)
			err = p.Stop(300 * time.Millisecond)
			if tc.wantKilled != (err != nil) {
				t.Errorf("Stop: %v, want killed=%t", err, tc.wantKilled)
			}
			if !p.Exited() {
				t.Error("Stop returned while the process runs")
			}
			if child != 0 && !gone(child, 2*time.Second) {
				t.Errorf("child %d of the group outlived Stop", child)
				_ = syscall.Kill(child, syscall.SIGKILL)
			}
			if again := p.Stop(time.Second); (again != nil) != (err != nil) {
				t.Errorf("a second Stop said %v, the first %v", again, err)
			}
		})
	}
}

// TestProcessKill: Kill is a crash, so a handler for SIGTERM never runs.
func TestProcessKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", "trap 'echo graceful > term; exit 0' TERM; sleep 30 & wait")
	cmd.Dir = dir
	p, err := StartProcess(cmd, filepath.Join(dir, "log"), false)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the shell install its trap
	p.Kill()
	if !p.Exited() {
		t.Fatal("Kill returned while the process runs")
	}
	if _, err := os.Stat(filepath.Join(dir, "term")); err == nil {
		t.Error("the SIGTERM handler ran: Kill stopped the process politely")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("Stop after Kill: %v", err)
	}
}

// waitChild reads the PID a group test's shell wrote for its background child.
func waitChild(t *testing.T, dir string, group bool) int {
	t.Helper()
	if !group {
		time.Sleep(100 * time.Millisecond) // let the shell install its trap
		return 0
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "child")); err == nil && strings.TrimSpace(string(b)) != "" {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the shell did not start its child")
	return 0
}

// gone waits until pid no longer exists. A signalled child lingers as a zombie until its new
// parent (init, after the shell died) reaps it.
func gone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
