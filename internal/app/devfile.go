package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DevInfo is what a running 'patchbay dev' records about itself so that
// operator commands started in another shell find it: the process and the
// addresses it listens on. It holds no secret.
type DevInfo struct {
	// PID is the dev process; a file whose process is gone is stale.
	PID int `json:"pid"`
	// NATSURL is the embedded JetStream server's client URL.
	NATSURL string `json:"nats_url"`
	// IngestAddr, AdminAddr, RevyOpsAddr and SkipcallAddr are host:port.
	IngestAddr   string    `json:"ingest_addr"`
	AdminAddr    string    `json:"admin_addr"`
	RevyOpsAddr  string    `json:"revyops_addr"`
	SkipcallAddr string    `json:"skipcall_addr"`
	StartedAt    time.Time `json:"started_at"`
}

// ErrNoDev is returned by FindDev when no 'patchbay dev' is running: there
// is no dev file, or the one there was left by a process that is gone.
var ErrNoDev = errors.New("no running 'patchbay dev' found")

// DevFilePath is where 'patchbay dev' records its DevInfo:
// $XDG_RUNTIME_DIR/patchbay/dev.json when XDG_RUNTIME_DIR is set (a per-user
// directory emptied at logout and reboot), else patchbay/dev.json under
// os.UserCacheDir. It fails only when neither directory can be determined.
func DevFilePath() (string, error) {
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		var err error
		if dir, err = os.UserCacheDir(); err != nil {
			return "", fmt.Errorf("dev file: %w", err)
		}
	}
	return filepath.Join(dir, "patchbay", "dev.json"), nil
}

// WriteDevInfo records info at DevFilePath, replacing the file in one
// rename so that a reader never sees half of it. Another dev's record is
// overwritten: the last dev started is the one commands find.
func WriteDevInfo(info DevInfo) error {
	path, err := DevFilePath()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("dev file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dev-*.json")
	if err != nil {
		return fmt.Errorf("dev file: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if err := errors.Join(werr, tmp.Close()); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("dev file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("dev file: %w", err)
	}
	return nil
}

// RemoveDevInfo removes the dev file if it still names process pid, so a
// dev stopping does not remove the record of a dev started after it. A
// missing file is not an error.
func RemoveDevInfo(pid int) error {
	path, err := DevFilePath()
	if err != nil {
		return err
	}
	info, err := readDevInfo(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || info.PID != pid {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dev file: %w", err)
	}
	return nil
}

// FindDev returns the addresses of the running 'patchbay dev' and the file
// they were read from. The error wraps ErrNoDev, and says why, when there
// is no file, when its process is gone, or when nothing accepts connections
// at its NATS address any more (a pid reused after the dev was killed);
// other errors are a file that cannot be read or parsed.
func FindDev() (DevInfo, string, error) {
	path, err := DevFilePath()
	if err != nil {
		return DevInfo{}, "", err
	}
	info, err := readDevInfo(path)
	if errors.Is(err, fs.ErrNotExist) {
		return DevInfo{}, path, fmt.Errorf("%w (no %s)", ErrNoDev, path)
	}
	if err != nil {
		return DevInfo{}, path, err
	}
	if !processAlive(info.PID) {
		return DevInfo{}, path, fmt.Errorf("%w (%s names pid %d, which is no longer running)", ErrNoDev, path, info.PID)
	}
	if !listening(info.NATSURL) {
		return DevInfo{}, path, fmt.Errorf("%w (%s names %s, where nothing listens)", ErrNoDev, path, info.NATSURL)
	}
	return info, path, nil
}

func readDevInfo(path string) (DevInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return DevInfo{}, err
	}
	var info DevInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return DevInfo{}, fmt.Errorf("dev file %s: %w", path, err)
	}
	return info, nil
}

// processAlive reports whether a process with this pid exists: signal 0
// checks without delivering anything; EPERM means it exists under another
// user.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// listening reports whether something accepts a TCP connection at the
// host:port of the NATS URL u, within a second (dev listens on loopback).
func listening(u string) bool {
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		return false
	}
	c, err := net.DialTimeout("tcp", pu.Host, time.Second)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}
