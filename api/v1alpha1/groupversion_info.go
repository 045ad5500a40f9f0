// Package v1alpha1 holds the dkm.io/v1alpha1 API: the DKMContainer resource.
// +kubebuilder:object:generate=true
// +groupName=dkm.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of DKMContainer.
	GroupVersion = schema.GroupVersion{Group: "dkm.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this group version.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types of this group version to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
