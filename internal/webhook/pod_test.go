package webhook

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
)

func TestPodInjectorDefault(t *testing.T) {
	pod := func(name, generateName string, ann map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, GenerateName: generateName, Annotations: ann},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}},
				InitContainers: []corev1.Container{{Name: "init"}}},
		}
	}
	cases := []struct {
		name      string
		pod       *corev1.Pod
		wantMount string // "" = no injection
		wantErr   string
	}{
		{"no annotation", pod("p", "", nil), "", ""},
		{"StatefulSet pod", pod("vmm-0", "", map[string]string{dkmv1.AnnotationInject: "vmm"}), DefaultMountPath, ""},
		{"generateName pod", pod("", "vmm-", map[string]string{dkmv1.AnnotationInject: "vmm"}), DefaultMountPath, ""},
		{"mount path override", pod("vmm-0", "", map[string]string{dkmv1.AnnotationInject: "vmm", dkmv1.AnnotationMountPath: "/etc/vmm/dkm"}), "/etc/vmm/dkm", ""},
		{"relative mount path", pod("vmm-0", "", map[string]string{dkmv1.AnnotationInject: "vmm", dkmv1.AnnotationMountPath: "etc/dkm"}), "", "clean absolute path"},
		{"unclean mount path", pod("vmm-0", "", map[string]string{dkmv1.AnnotationInject: "vmm", dkmv1.AnnotationMountPath: "/etc/../dkm"}), "", "clean absolute path"},
		{"bad DKMContainer name", pod("vmm-0", "", map[string]string{dkmv1.AnnotationInject: "Not_A_Name"}), "", "does not name a DKMContainer"},
		{"no name at all", pod("", "", map[string]string{dkmv1.AnnotationInject: "vmm"}), "", "neither a name nor generateName"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.pod.DeepCopy()
			err := PodInjector{}.Default(context.Background(), p)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantMount == "" {
				if len(p.Spec.Volumes) != 0 {
					t.Fatalf("volumes injected into a pod that did not ask: %v", p.Spec.Volumes)
				}
				return
			}
			if p.Name == "" || (tc.pod.GenerateName != "" && !strings.HasPrefix(p.Name, tc.pod.GenerateName)) {
				t.Fatalf("name %q not settled from generateName %q", p.Name, tc.pod.GenerateName)
			}
			assertInjected(t, p, tc.wantMount)

			// Reinvocation changes nothing.
			again := p.DeepCopy()
			if err := (PodInjector{}).Default(context.Background(), again); err != nil {
				t.Fatal(err)
			}
			if len(again.Spec.Volumes) != 1 || len(again.Spec.Containers[0].VolumeMounts) != 1 {
				t.Fatalf("second call injected again: %+v", again.Spec)
			}
		})
	}
}

// assertInjected checks the key volume names the pod's Secret and every container mounts it
// read-only at mountPath.
func assertInjected(t *testing.T, p *corev1.Pod, mountPath string) {
	t.Helper()
	if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].Secret == nil {
		t.Fatalf("volumes = %+v, want one secret volume", p.Spec.Volumes)
	}
	if got, want := p.Spec.Volumes[0].Secret.SecretName, dkmv1.KeySecretName(p.Annotations[dkmv1.AnnotationInject], p.Name); got != want {
		t.Errorf("secret name = %q, want %q", got, want)
	}
	for _, c := range p.Spec.Containers {
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != mountPath || !c.VolumeMounts[0].ReadOnly {
			t.Errorf("container %s mounts = %+v, want %s read-only", c.Name, c.VolumeMounts, mountPath)
		}
	}
}
