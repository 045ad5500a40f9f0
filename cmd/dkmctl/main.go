// Command dkmctl backs up, restores, verifies and plans DKM containers in Active Directory
// (see internal/dkmctl and README.md, "Disaster recovery"). Installed as kubectl-dkm on the
// PATH, it is also the kubectl plugin "kubectl dkm".
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/dkm-operator/dkm-operator/internal/dkmctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := dkmctl.Run(ctx, os.Args[1:], dkmctl.Env{})
	stop()
	os.Exit(code)
}
