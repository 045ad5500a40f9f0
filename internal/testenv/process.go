package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Process is a server the tests (or the demo) run as a child: it is killed if its parent dies,
// and stopped politely by Stop. Samba, kube-controller-manager and the demo's operator use it.
type Process struct {
	cmd   *exec.Cmd
	group bool

	done     chan struct{}
	mu       sync.Mutex
	werr     error
	stopOnce sync.Once
	stopErr  error
}

// StartProcess starts cmd with its output appended to logPath. With group, the child gets its
// own process group and Stop signals the whole group (for servers that fork, like samba).
func StartProcess(cmd *exec.Cmd, logPath string, group bool) (*Process, error) {
	p := &Process{cmd: cmd, group: group, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child exits, so that thread stays
		// locked to this goroutine for the child's whole life.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			started <- fmt.Errorf("creating the log of %s: %w", cmd.Path, err)
			return
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: group}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err = cmd.Wait()
		p.mu.Lock()
		p.werr = err
		p.mu.Unlock()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// Exited reports whether the process has ended (crashed, or stopped).
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is how the process ended (nil while it runs or after a clean exit).
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.werr
}

// Stop sends SIGTERM, then SIGKILL if the process has not ended within grace, and waits for it.
// It reports an error only when the process had to be killed. It is safe to call more than once.
func (p *Process) Stop(grace time.Duration) error {
	p.stopOnce.Do(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			p.signal(syscall.SIGKILL)
			<-p.done
			p.stopErr = fmt.Errorf("%s did not stop within %s of SIGTERM; killed", p.cmd.Path, grace)
		}
	})
	return p.stopErr
}

// Kill ends the process at once with SIGKILL, as a crash would (no shutdown code runs), and
// waits for it. Stop after Kill does nothing.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		p.signal(syscall.SIGKILL)
		<-p.done
	})
}

func (p *Process) signal(sig syscall.Signal) {
	if p.group {
		_ = syscall.Kill(-p.cmd.Process.Pid, sig)
		return
	}
	_ = p.cmd.Process.Signal(sig)
}
