package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clkTck is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is 100 on
// every Linux/amd64 kernel in practice (getconf CLK_TCK); run.sh checks it.
const clkTck = 100

// procCPUSplit returns user and system CPU seconds of process pid.
func procCPUSplit(pid int) (float64, float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad utime/stime in /proc/%d/stat", pid)
	}
	return float64(ut) / clkTck, float64(st) / clkTck, nil
}

// procStatus returns the value (first number) of a "Key:" line of /proc/PID/status.
func procStatus(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", key, pid)
}

// procFDs returns the number of open file descriptors of pid.
func procFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// serverCPU is a helper for a before/after CPU delta of -server-pid.
type serverCPU struct {
	pid       int
	user, sys float64
	ok        bool
}

func startServerCPU(pid int) *serverCPU {
	s := &serverCPU{pid: pid}
	if pid > 0 {
		if u, sy, err := procCPUSplit(pid); err == nil {
			s.user, s.sys, s.ok = u, sy, true
		} else {
			logf("cannot read server CPU: %v", err)
		}
	}
	return s
}

func (s *serverCPU) put(res map[string]any) {
	if !s.ok {
		return
	}
	if u, sy, err := procCPUSplit(s.pid); err == nil {
		res["server_cpu_s"] = round3(u + sy - s.user - s.sys)
		res["server_user_s"] = round3(u - s.user)
		res["server_sys_s"] = round3(sy - s.sys)
	}
	if v, err := procStatus(s.pid, "VmRSS"); err == nil {
		res["server_rss_kib"] = v
	}
}
