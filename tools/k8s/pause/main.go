// Command pause is the test node's pod sandbox process (containerd's sandbox_image).
// It holds the pod's namespaces open, reaps the orphans a pod's PID namespace hands it,
// and exits 0 on SIGTERM or SIGINT, like the upstream pause image.
//
// Static (CGO_ENABLED=0), so the image needs no other file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child; one SIGCHLD may stand for several.
func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
