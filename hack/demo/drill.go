package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/dkmctl"
)

// drill is the recovery drill of README "Disaster recovery": back up with dkmctl, lose the
// container subtree in AD (KeyLost), restore, and Ready again with the same key, while the
// replicas' key Secrets are never rewritten.
func (d *demo) drill(ctx context.Context, env *environment) error {
	d.section("Recovery drill: back up, lose the container in AD, restore")
	sample, err := loadSample(env)
	if err != nil {
		return err
	}
	before := &dkmv1.DKMContainer{}
	if err := env.client.Get(ctx, client.ObjectKeyFromObject(sample), before); err != nil {
		return err
	}
	secrets, err := replicaSecretVersions(ctx, env, before.Name)
	if err != nil {
		return err
	}
	pass := filepath.Join(env.work, "backup-passphrase")
	if err := os.WriteFile(pass, []byte(randomText(24)+"\n"), 0o600); err != nil {
		return err
	}
	file := filepath.Join(env.work, before.Name+".age")
	if err := d.dkmctl(ctx, env, "backup", before.Name, "-n", namespace, "-o", file, "--passphrase-file", pass); err != nil {
		return err
	}

	if err := env.dc.DeleteTree(before.Spec.Path); err != nil {
		return err
	}
	d.printf("\nDeleted %s and everything below it in AD.\n", before.Spec.Path)
	lost, err := waitReason(ctx, env, before, dkmv1.ReasonKeyLost)
	if err != nil {
		return err
	}
	d.printf("Ready: False, %s: %s\n\n", lost.Reason, lost.Message)

	start := time.Now()
	if err := d.dkmctl(ctx, env, "restore", before.Name, "-n", namespace, "-i", file, "--passphrase-file", pass); err != nil {
		return err
	}
	if _, err := waitReason(ctx, env, before, dkmv1.ReasonReady); err != nil {
		return err
	}
	after := &dkmv1.DKMContainer{}
	if err := env.client.Get(ctx, client.ObjectKeyFromObject(before), after); err != nil {
		return err
	}
	if after.Status.ActiveKeyFingerprint != before.Status.ActiveKeyFingerprint {
		return fmt.Errorf("restored key %s, the lost one was %s", after.Status.ActiveKeyFingerprint, before.Status.ActiveKeyFingerprint)
	}
	d.printf("\nReady again %s after the restore, same key %s (container objectGUID %s, was %s).\n",
		time.Since(start).Round(10*time.Millisecond), after.Status.ActiveKeyFingerprint, after.Status.Container.GUID,
		before.Status.Container.GUID)
	now, err := replicaSecretVersions(ctx, env, before.Name)
	if err != nil {
		return err
	}
	for name, rv := range secrets {
		if now[name] != rv {
			return fmt.Errorf("replica Secret %s was rewritten during the drill (resourceVersion %s, was %s)", name, now[name], rv)
		}
	}
	d.printf("The %d replica key Secrets were never rewritten.\n", len(secrets))
	return nil
}

func (d *demo) dkmctl(ctx context.Context, env *environment, args ...string) error {
	d.printf("\n$ dkmctl %s\n", strings.Join(args, " "))
	if code := dkmctl.Run(ctx, args, dkmctl.Env{Stdout: d.out, Stderr: d.out, Kube: env.client}); code != dkmctl.ExitOK {
		return fmt.Errorf("dkmctl %s: exit %d", args[0], code)
	}
	return nil
}

// replicaSecretVersions maps each key Secret of the DKMContainer to its resourceVersion.
func replicaSecretVersions(ctx context.Context, env *environment, name string) (map[string]string, error) {
	list := &corev1.SecretList{}
	if err := env.client.List(ctx, list, client.InNamespace(namespace), client.MatchingLabels{controllers.LabelContainer: name}); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range list.Items {
		out[s.Name] = s.ResourceVersion
	}
	return out, nil
}

// waitReason waits until Ready has the reason.
func waitReason(ctx context.Context, env *environment, obj *dkmv1.DKMContainer, reason string) (*metav1.Condition, error) {
	return waitFor(ctx, env, obj, reason, func(_ *dkmv1.DKMContainer, ready *metav1.Condition) bool { return ready.Reason == reason })
}
