package controllers

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/dkm-operator/dkm-operator/internal/directory"
)

// Watching AD: with a directory.Watcher, each DKMContainer's container is watched with AD change
// notification once it binds, and a change below it (a DACL edit, a deleted key, a new DC
// Manager) is reconciled at once instead of at the next resync. The resync stays, as the net
// under a DC that refuses notification or is unreachable.

// watchKey is the Watcher's key for a DKMContainer.
func watchKey(nn types.NamespacedName) string { return nn.String() }

// watchSource turns the Watcher's events into reconcile requests.
func (r *DKMContainerReconciler) watchSource() source.Source {
	return source.Func(func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		go func() {
			for {
				select {
				case key := <-r.Watcher.Events():
					ns, name, _ := strings.Cut(key, "/")
					q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
				case <-ctx.Done():
					return
				}
			}
		}()
		return nil
	})
}

// watch makes sure the DKMContainer's container is watched over the connection it was just
// bound with, and says for DirectoryReachable's message how its changes are seen.
func (r *DKMContainerReconciler) watch(ctx context.Context, s *scope, cfg directory.Config) string {
	if r.Watcher == nil {
		return ""
	}
	st, err := r.Watcher.Watch(watchKey(namespacedName(s.obj)), cfg, s.obj.Spec.Path)
	if err != nil {
		// The path or config was refused before any network use; the phases that follow say
		// what is wrong with them.
		logf.FromContext(ctx).Info("not watching the container for changes", "error", err.Error())
		return fmt.Sprintf("; changes are seen at the resync every %s", r.resync())
	}
	switch st.Mode {
	case directory.WatchLive:
		msg := "; AD change notification is active on " + st.Endpoint + ": changes are reconciled at once"
		if st.Detail != "" {
			msg += " (" + st.Detail + ")"
		}
		return msg
	case directory.WatchConnecting:
		why := ""
		if st.Detail != "" {
			why = " (" + st.Detail + ")"
		}
		return fmt.Sprintf("; opening AD change notification%s; until it is open, changes are seen at the resync every %s",
			why, r.resync())
	default:
		return fmt.Sprintf("; AD change notification unavailable (%s): changes are seen at the resync every %s",
			st.Detail, r.resync())
	}
}

// forgetWatch stops watching a DKMContainer's container.
func (r *DKMContainerReconciler) forgetWatch(nn types.NamespacedName) {
	if r.Watcher != nil {
		r.Watcher.Forget(watchKey(nn))
	}
}
