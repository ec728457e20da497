// Command pause is labkit's pod sandbox process.
//
// It holds a pod's namespaces open by doing nothing: it waits for SIGTERM or
// SIGINT and exits 0, and as PID 1 of the pod's PID namespace it reaps every
// child that is reparented to it, so exited processes never stay as zombies.
// It is built static and stripped (CGO_ENABLED=0, -ldflags "-s -w") by
// labkit.images and packed into a one-layer OCI image; nothing is committed.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("labkit pause 1")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		fmt.Fprintf(os.Stderr, "pause: %v, exiting\n", sig)
		os.Exit(0)
	}
}

// reapChildren collects every exited child without blocking.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
