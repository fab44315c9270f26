package cli

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
)

// startProfiles starts the CPU profile -cpuprofile asks for. The returned
// function stops it and writes the allocation profile -memprofile asks for;
// the command calls it at exit. Profiles are how docs/performance.md shows
// where a loaded server spends its time.
func startProfiles(cpuFile, memFile string) (stop func(stderr io.Writer), err error) {
	var cpu *os.File
	if cpuFile != "" {
		if cpu, err = os.Create(cpuFile); err != nil {
			return nil, fmt.Errorf("-cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(cpu); err != nil {
			cpu.Close()
			return nil, fmt.Errorf("-cpuprofile: %w", err)
		}
	}
	return func(stderr io.Writer) {
		if cpu != nil {
			pprof.StopCPUProfile()
			if err := cpu.Close(); err != nil {
				fmt.Fprintf(stderr, "smtpd: -cpuprofile: %v\n", err)
			}
		}
		if memFile != "" {
			if err := writeAllocProfile(memFile); err != nil {
				fmt.Fprintf(stderr, "smtpd: -memprofile: %v\n", err)
			}
		}
	}, nil
}

func writeAllocProfile(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	runtime.GC() // up-to-date figures for what is still in use
	err = pprof.Lookup("allocs").WriteTo(f, 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
