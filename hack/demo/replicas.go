package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/keys"
	"github.com/dkm-operator/dkm-operator/internal/webhook"
)

const (
	replicas       = 3
	statefulSet    = "vmm"
	serviceAccount = "vmm"
)

// replica is what the demo shows of one pod: never the key, only its fingerprint.
type replica struct {
	pod         string
	uid         types.UID
	secret      string
	keyID       string
	fingerprint string
	mount       string
}

// startReplicas creates the management service's StatefulSet (three replicas running as the
// allowed service account, annotated for injection) and waits until every pod holds its key.
func (d *demo) startReplicas(ctx context.Context, env *environment) error {
	d.section("Three replicas of the management service")
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount, Namespace: namespace}}
	if err := env.client.Create(ctx, sa); err != nil {
		return fmt.Errorf("creating ServiceAccount %s: %w", serviceAccount, err)
	}
	labels := map[string]string{"app.kubernetes.io/name": "vmm"}
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: statefulSet, Namespace: namespace},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To[int32](replicas),
			ServiceName: statefulSet,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			// No kubelet runs here, so pods never become Ready; Parallel creates all three anyway.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels,
					Annotations: map[string]string{dkmv1.AnnotationInject: "vmm"},
				},
				Spec: corev1.PodSpec{
					ServiceAccountName: serviceAccount,
					Containers:         []corev1.Container{{Name: "vmm", Image: "vmm-server:demo"}},
				},
			},
		},
	}
	start := time.Now()
	if err := env.client.Create(ctx, sts); err != nil {
		return fmt.Errorf("creating StatefulSet %s: %w", statefulSet, err)
	}
	d.printf("StatefulSet %s: %d replicas, serviceAccountName %s, annotation %s: vmm.\n",
		statefulSet, replicas, serviceAccount, dkmv1.AnnotationInject)
	var got []replica
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = readReplicas(ctx, env)
		return err == nil && len(got) == replicas, err
	})
	if err != nil {
		return fmt.Errorf("waiting for %d replicas with key Secrets (have %d): %w", replicas, len(got), err)
	}
	d.printf("All %d pods hold their key Secret %s after the StatefulSet was created.\n\n",
		replicas, time.Since(start).Round(10*time.Millisecond))
	d.printReplicas(got)
	return d.checkFingerprints(ctx, env, got)
}

// readReplicas returns the pods of the StatefulSet that hold a Secret owned by them. Pods
// still waiting for theirs are left out.
func readReplicas(ctx context.Context, env *environment) ([]replica, error) {
	pods := &corev1.PodList{}
	if err := env.client.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/name": "vmm"}); err != nil {
		return nil, err
	}
	var out []replica
	for _, pod := range pods.Items {
		r, ok, err := readReplica(ctx, env, &pod)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func readReplica(ctx context.Context, env *environment, pod *corev1.Pod) (replica, bool, error) {
	name := dkmv1.KeySecretName("vmm", pod.Name)
	s := &corev1.Secret{}
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return replica{}, false, nil
		}
		return replica{}, false, err
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != pod.UID {
		return replica{}, false, nil // still the previous pod's
	}
	material, err := keys.NewMaterial(s.Data[controllers.SecretKeyActive])
	if err != nil {
		return replica{}, false, fmt.Errorf("Secret %s: %w", name, err)
	}
	return replica{
		pod:         pod.Name,
		uid:         pod.UID,
		secret:      name,
		keyID:       string(s.Data[controllers.SecretKeyActiveID]),
		fingerprint: material.Fingerprint().String(),
		mount:       injectedMount(pod, name),
	}, true, nil
}

// injectedMount describes the volume the webhook added for the pod's own Secret.
func injectedMount(pod *corev1.Pod, secretName string) string {
	for _, v := range pod.Spec.Volumes {
		if v.Name != webhook.VolumeName || v.Secret == nil || v.Secret.SecretName != secretName {
			continue
		}
		for _, c := range pod.Spec.Containers {
			for _, m := range c.VolumeMounts {
				if m.Name == webhook.VolumeName {
					return fmt.Sprintf("%s (read-only: %t)", m.MountPath, m.ReadOnly)
				}
			}
		}
	}
	return "<not injected>"
}

func (d *demo) printReplicas(rs []replica) {
	w := tabwriter.NewWriter(d.out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "POD\tPOD UID\tSECRET\tKEY ID\tKEY FINGERPRINT\tMOUNTED AT")
	for _, r := range rs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.pod, shortUID(r.uid), r.secret, r.keyID, r.fingerprint, r.mount)
	}
	_ = w.Flush()
}

// checkFingerprints fails the demo unless every replica holds the key AD holds, as the
// DKMContainer's status names it.
func (d *demo) checkFingerprints(ctx context.Context, env *environment, rs []replica) error {
	obj := &dkmv1.DKMContainer{}
	if err := env.client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "vmm"}, obj); err != nil {
		return err
	}
	for _, r := range rs {
		if r.fingerprint != obj.Status.ActiveKeyFingerprint || r.keyID != obj.Status.ActiveKeyID {
			return fmt.Errorf("pod %s holds key %s (%s), but AD's active key is %s (%s)",
				r.pod, r.keyID, r.fingerprint, obj.Status.ActiveKeyID, obj.Status.ActiveKeyFingerprint)
		}
		if !strings.HasPrefix(r.mount, "/") {
			return fmt.Errorf("pod %s: the webhook did not mount its Secret", r.pod)
		}
	}
	d.printf("Every replica holds AD's active key %s (status.activeKeyFingerprint %s).\n",
		obj.Status.ActiveKeyID, obj.Status.ActiveKeyFingerprint)
	return nil
}

// failover deletes pod-0 as a dying node would lose it; the StatefulSet controller creates a
// replacement with the same name, and the operator serves it the same key from memory.
func (d *demo) failover(ctx context.Context, env *environment) error {
	d.section("Failover: %s-0 is lost", statefulSet)
	before, err := readReplicas(ctx, env)
	if err != nil {
		return err
	}
	var old replica
	for _, r := range before {
		if r.pod == statefulSet+"-0" {
			old = r
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: old.pod, Namespace: namespace}}
	start := time.Now()
	if err := env.client.Delete(ctx, pod, client.GracePeriodSeconds(0)); err != nil {
		return fmt.Errorf("deleting pod %s: %w", old.pod, err)
	}
	d.printf("Deleted pod %s (uid %s).\n", old.pod, shortUID(old.uid))
	var replacement replica
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := env.client.Get(ctx, client.ObjectKeyFromObject(pod), p); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		if p.UID == old.uid {
			return false, nil
		}
		r, ok, err := readReplica(ctx, env, p)
		replacement = r
		return ok, err
	})
	if err != nil {
		return fmt.Errorf("waiting for the replacement of %s to hold its key: %w", old.pod, err)
	}
	d.printf("The StatefulSet controller created a new %s (uid %s); it held its key Secret %s after the old pod was deleted.\n\n",
		replacement.pod, shortUID(replacement.uid), time.Since(start).Round(10*time.Millisecond))
	d.printReplicas([]replica{old, replacement})
	if replacement.fingerprint != old.fingerprint {
		return fmt.Errorf("the replacement holds key %s, the lost pod held %s", replacement.fingerprint, old.fingerprint)
	}
	d.printf("Same key after the failover: %s.\n", replacement.fingerprint)
	after, err := readReplicas(ctx, env)
	if err != nil {
		return err
	}
	return d.checkFingerprints(ctx, env, after)
}

// showMetrics prints the operator's own metrics (dkm_*) from its metrics endpoint.
func (d *demo) showMetrics(ctx context.Context, env *environment) error {
	d.section("The operator's metrics (%s)", env.operator.metricsURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.operator.metricsURL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("reading metrics: %w", err)
	}
	defer resp.Body.Close()
	s := bufio.NewScanner(resp.Body)
	for s.Scan() {
		if line := s.Text(); strings.HasPrefix(line, "dkm_") {
			d.printf("%s\n", line)
		}
	}
	return s.Err()
}

func shortUID(uid types.UID) string {
	if len(uid) > 8 {
		return string(uid[:8])
	}
	return string(uid)
}
