package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProvisioningMode says who creates the DKM container in AD.
// +kubebuilder:validation:Enum=Create;Adopt
type ProvisioningMode string

const (
	// ProvisioningCreate: the operator creates the container (its identity needs Create-child
	// rights on the parent).
	ProvisioningCreate ProvisioningMode = "Create"
	// ProvisioningAdopt: a domain admin pre-created the container and delegated Read, Write and
	// Create all child objects (the operator checks Create container objects and Create contact
	// objects) to the operator's identity, and with AccessEnforce also Modify permissions
	// (WRITE_DAC) to write the template DACL. The operator verifies these rights.
	ProvisioningAdopt ProvisioningMode = "Adopt"
)

// AccessPolicy says what the operator does when the container's DACL drifts from the template.
// +kubebuilder:validation:Enum=Enforce;Audit
type AccessPolicy string

const (
	// AccessEnforce repairs drift by writing the template DACL back.
	AccessEnforce AccessPolicy = "Enforce"
	// AccessAudit reports drift in status and events and changes nothing.
	AccessAudit AccessPolicy = "Audit"
)

// KeyProtectionMode says how a key is stored in AD.
// +kubebuilder:validation:Enum=Wrapped;Plain
type KeyProtectionMode string

const (
	// KeyWrapped stores an AES-256-GCM envelope under a key-encryption key (KEK) held in a
	// Kubernetes Secret: an AD backup alone does not reveal keys.
	KeyWrapped KeyProtectionMode = "Wrapped"
	// KeyPlain stores raw key bytes (the AD FS layout), protected by the ACEs alone.
	KeyPlain KeyProtectionMode = "Plain"
)

// DeletionPolicy says what deleting the resource does to AD.
// +kubebuilder:validation:Enum=Retain;Delete
type DeletionPolicy string

// Role is a DKMContainer's part in its AD container.
// +kubebuilder:validation:Enum=Writer;Reader
type Role string

const (
	// RoleWriter owns the container (its ownership record is in AD) and alone writes it.
	RoleWriter Role = "Writer"
	// RoleReader loads and projects the key of a container another DKMContainer owns.
	RoleReader Role = "Reader"
)

const (
	// DeletionRetain leaves AD untouched: the container and its keys stay.
	DeletionRetain DeletionPolicy = "Retain"
	// DeletionDelete removes what the operator created in AD, once no replica uses the key.
	DeletionDelete DeletionPolicy = "Delete"
)

// SecretReference names a Secret in the DKMContainer's namespace.
type SecretReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// SecretKeyReference names one key of a Secret in the DKMContainer's namespace.
type SecretKeyReference struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key within the Secret's data.
	// +kubebuilder:default="ca.crt"
	// +optional
	Key string `json:"key,omitempty"`
}

// DirectorySpec says how to reach Active Directory and as whom.
// +kubebuilder:validation:XValidation:rule="!has(self.minKeyCopies) || self.minKeyCopies <= size(self.urls)",message="minKeyCopies cannot exceed the number of urls: a new key is read back from that many different domain controllers"
type DirectorySpec struct {
	// URLs of domain controllers: ldaps://host[:port], or ldap://host[:port], which always
	// upgrades with StartTLS unless insecureAllowPlainLDAP is set. Every writer uses the
	// domain's PDC emulator when it is among them, else the first that answers. List two or
	// more DCs of the domain for durable keys (see minKeyCopies).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:Pattern=`^ldaps?://[^/?#\s]+/?$`
	URLs []string `json:"urls"`

	// BindSecretRef names a Secret with keys `username` (UPN, DOMAIN\name or DN) and `password`.
	BindSecretRef SecretReference `json:"bindSecretRef"`

	// CABundleSecretRef names a Secret key holding the PEM CA bundle that signed the domain
	// controllers' certificates. Without it the system's roots are used.
	// +optional
	CABundleSecretRef *SecretKeyReference `json:"caBundleSecretRef,omitempty"`

	// InsecureAllowPlainLDAP lets ldap:// URLs skip StartTLS, sending the bind password and keys
	// in clear text. Never use it outside a lab.
	// +optional
	InsecureAllowPlainLDAP bool `json:"insecureAllowPlainLDAP,omitempty"`

	// DialTimeout bounds connecting to one domain controller.
	// +kubebuilder:default="5s"
	// +optional
	DialTimeout *metav1.Duration `json:"dialTimeout,omitempty"`

	// OperationTimeout bounds one LDAP operation.
	// +kubebuilder:default="15s"
	// +optional
	OperationTimeout *metav1.Duration `json:"operationTimeout,omitempty"`

	// MinKeyCopies is how many of the listed domain controllers must hold a new key (read back
	// from each) before it becomes active, is recorded in status and reaches any replica: a key
	// written to one DC that dies before replicating it is then never in use. Unset: 2 when two
	// or more urls are listed, else 1 (status says that the key is then on one DC only). At
	// most the number of urls.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=16
	// +optional
	MinKeyCopies *int32 `json:"minKeyCopies,omitempty"`
}

// KeyCopies is the number of domain controllers that must hold a new key: MinKeyCopies, or 2
// when two or more URLs are listed, else 1.
func (d DirectorySpec) KeyCopies() int {
	switch {
	case d.MinKeyCopies != nil:
		return int(*d.MinKeyCopies)
	case len(d.URLs) >= 2:
		return 2
	default:
		return 1
	}
}

// KeyProtectionSpec says how keys are stored in AD.
// +kubebuilder:validation:XValidation:rule="self.mode != 'Wrapped' || has(self.kekSecretRef)",message="keyProtection.mode Wrapped needs kekSecretRef: a Secret whose key `kek` holds the 32-byte key-encryption key"
type KeyProtectionSpec struct {
	// Mode is Wrapped (an AES-256-GCM envelope under the KEK) or Plain (raw key bytes, the AD FS
	// layout, protected by the ACEs alone).
	// +kubebuilder:default=Wrapped
	// +optional
	Mode KeyProtectionMode `json:"mode,omitempty"`

	// KEKSecretRef names the Secret holding the key-encryption key: `kek` is the active 32-byte
	// KEK; any `kek.<suffix>` entries are retired KEKs still accepted for unwrapping.
	// +optional
	KEKSecretRef *SecretReference `json:"kekSecretRef,omitempty"`
}

// MinRotationPeriod is the shortest rotation.period: the CEL rule on the field says the same.
const MinRotationPeriod = time.Hour

// RotationSpec schedules key rotation. Old key versions are never deleted automatically.
type RotationSpec struct {
	// Period after which a new key version is added and made active; at least 1h. Unset: never
	// rotate. Every rotation adds a version that is kept for good, so a period of seconds would
	// grow the ring on every reconcile, and zero or a negative value would silently mean never.
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="rotation.period must be at least 1h (unset it to never rotate)"
	// +optional
	Period *metav1.Duration `json:"period,omitempty"`
}

// ReplicasSpec says which pods receive the key.
type ReplicasSpec struct {
	// Selector matches the replica pods in the DKMContainer's namespace.
	Selector metav1.LabelSelector `json:"selector"`

	// ServiceAccountNames are the Kubernetes service accounts a matching pod must run as to
	// receive the key.
	// +kubebuilder:validation:MinItems=1
	ServiceAccountNames []string `json:"serviceAccountNames"`
}

// DKMContainerSpec is the desired state of a DKM container in Active Directory.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.provisioning) || self.provisioning == oldSelf.provisioning",message="provisioning is immutable"
type DKMContainerSpec struct {
	// Directory says how to reach AD.
	Directory DirectorySpec `json:"directory"`

	// Path is the distinguished name of the DKM container, e.g.
	// CN=VMMDKM,CN=System,DC=demo,DC=local. Immutable.
	// +kubebuilder:validation:MinLength=4
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9-]*=([^,+"\\<>;=]|\\.)+(,\s*[A-Za-z][A-Za-z0-9-]*=([^,+"\\<>;=]|\\.)+)+$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="path is immutable: create a new DKMContainer for another container"
	Path string `json:"path"`

	// Provisioning is Create (the operator creates the container) or Adopt (a domain admin
	// pre-created it and delegated Read, Write, Create container objects and Create contact
	// objects to the operator's bind identity, and with accessPolicy Enforce Modify permissions
	// too). Immutable.
	// +kubebuilder:default=Create
	// +optional
	Provisioning ProvisioningMode `json:"provisioning,omitempty"`

	// ServiceAccounts are the AD principals granted Full Control on the container and its
	// descendants: the accounts the clustered management service runs as. Each is DOMAIN\name,
	// name@realm, or a SID (S-1-5-21-...).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:Pattern=`^([^\\/@\s]+\\[^\\/@]+|[^\\/@\s]+@[^\\/@\s]+|S-1-[0-9]+(-[0-9]+)+)$`
	// +listType=set
	ServiceAccounts []string `json:"serviceAccounts"`

	// AccessPolicy is Enforce (repair DACL drift) or Audit (report it, change nothing).
	// +kubebuilder:default=Enforce
	// +optional
	AccessPolicy AccessPolicy `json:"accessPolicy,omitempty"`

	// KeyProtection says how keys are stored in AD.
	KeyProtection KeyProtectionSpec `json:"keyProtection"`

	// Rotation schedules key rotation.
	// +optional
	Rotation *RotationSpec `json:"rotation,omitempty"`

	// Replicas says which pods receive the key.
	// +optional
	Replicas *ReplicasSpec `json:"replicas,omitempty"`

	// DeletionPolicy is Retain (deleting the resource never touches AD) or Delete (remove what
	// the operator created in AD, once no replica uses the key).
	// +kubebuilder:default=Retain
	// +optional
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// ChangeApproval is Automatic (the operator writes AD as soon as it finds a change to make)
	// or Manual (it writes nothing to AD until a person approves the exact changes: it puts
	// them, with their hash, in status.changes.pending, and makes them once the DKMContainer
	// is annotated dkm.io/approve-changes=<hash>; a different plan needs a new approval).
	// Reading AD and serving existing keys to replicas never wait. `dkmctl plan` prints the
	// same plan.
	// +kubebuilder:default=Automatic
	// +optional
	ChangeApproval ChangeApproval `json:"changeApproval,omitempty"`
}

// ChangeApproval says whether AD changes wait for a person.
// +kubebuilder:validation:Enum=Automatic;Manual
type ChangeApproval string

const (
	// ChangeApprovalAutomatic: the operator makes the changes it plans at once.
	ChangeApprovalAutomatic ChangeApproval = "Automatic"
	// ChangeApprovalManual: the operator makes a plan's changes only once annotated with its hash.
	ChangeApprovalManual ChangeApproval = "Manual"
)

// PlannedChanges is a plan of AD changes (changeApproval Manual).
type PlannedChanges struct {
	// Hash identifies the plan and the AD state it was made from; approving means annotating
	// the DKMContainer dkm.io/approve-changes=<hash>.
	Hash string `json:"hash"`
	// Summary says in one line what the plan does.
	Summary string `json:"summary"`
	// Changes lists each AD write: the operation, the object's class and DN, and what it sets
	// (DACLs in SDDL). Names not known before the write (a new key's ID) are shown as <new ...>.
	// +optional
	Changes []string `json:"changes,omitempty"`
}

// ChangesStatus is what changeApproval Manual waits for, and what it was last allowed to do.
type ChangesStatus struct {
	// Pending is the plan waiting for approval; absent when there is nothing to change or the
	// plan is approved.
	// +optional
	Pending *PlannedChanges `json:"pending,omitempty"`
	// Approved is the last plan approved, kept while its changes are carried out (a key
	// waiting to replicate finishes under the same approval).
	// +optional
	Approved *PlannedChanges `json:"approved,omitempty"`
}

// ObjectReference identifies an AD object.
type ObjectReference struct {
	// DN is the object's distinguished name.
	DN string `json:"dn"`
	// GUID is the object's objectGUID.
	GUID string `json:"guid"`
	// CreatedByOperator is true when this operator created the object, so deletionPolicy Delete
	// may remove it. Objects a person created are never deleted.
	// +optional
	CreatedByOperator bool `json:"createdByOperator,omitempty"`
}

// KeyVersion describes one key version without revealing it.
type KeyVersion struct {
	// ID is the key version's GUID.
	ID string `json:"id"`
	// Fingerprint names the key without revealing it.
	Fingerprint string `json:"fingerprint"`
	// Created is when the key version was added to AD.
	// +optional
	Created *metav1.Time `json:"created,omitempty"`
}

// DriftStatus records the last DACL drift seen on the container.
type DriftStatus struct {
	// Time the drift was seen.
	Time metav1.Time `json:"time"`
	// Missing ACEs, in SDDL.
	// +optional
	Missing []string `json:"missing,omitempty"`
	// Unexpected ACEs, in SDDL.
	// +optional
	Unexpected []string `json:"unexpected,omitempty"`
	// ProtectionChanged is true when the DACL was found unprotected (inheriting from above).
	// +optional
	ProtectionChanged bool `json:"protectionChanged,omitempty"`
	// Repaired is true when the operator wrote the template back (Enforce).
	// +optional
	Repaired bool `json:"repaired,omitempty"`
}

// DKMContainerStatus is the observed state.
type DKMContainerStatus struct {
	// ObservedGeneration is the generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: DirectoryReachable, ContainerReady, AccessControlled, KeyReady,
	// ReplicasProjected, summarised in Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Container is the DKM container in AD.
	// +optional
	Container *ObjectReference `json:"container,omitempty"`

	// KeyObject is the `DC Manager <GUID>` object holding the keys.
	// +optional
	KeyObject *ObjectReference `json:"keyObject,omitempty"`

	// ActiveKeyID is the ID of the key version in use.
	// +optional
	ActiveKeyID string `json:"activeKeyID,omitempty"`

	// ActiveKeyFingerprint names the active key without revealing it.
	// +optional
	ActiveKeyFingerprint string `json:"activeKeyFingerprint,omitempty"`

	// Keys lists every retained key version (never key bytes).
	// +optional
	Keys []KeyVersion `json:"keys,omitempty"`

	// ProjectedReplicas is the number of pods holding a current key Secret.
	// +optional
	ProjectedReplicas int32 `json:"projectedReplicas,omitempty"`

	// LastDrift is the last DACL drift seen.
	// +optional
	LastDrift *DriftStatus `json:"lastDrift,omitempty"`

	// Role is this DKMContainer's part in its AD container, read from the ownership record in
	// AD: Writer (it owns the container and alone writes it) or Reader (another DKMContainer,
	// here or in another cluster, owns it; this one loads the key and projects it, and never
	// writes AD). Empty until the container was read.
	// +optional
	Role Role `json:"role,omitempty"`

	// Owner names the DKMContainer recorded in AD as the container's owner:
	// "<namespace>/<name> in cluster <kube-system UID> (uid <UID>)".
	// +optional
	Owner string `json:"owner,omitempty"`

	// Changes is the plan of AD changes that waits for approval (spec.changeApproval Manual).
	// +optional
	Changes *ChangesStatus `json:"changes,omitempty"`
}

// DKMContainer is an Active Directory Distributed Key Management container: its DACL, the
// `DC Manager` key object and the key it guards, and the replica pods that receive the key.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dkm,categories=dkm
// +kubebuilder:printcolumn:name="Path",type=string,JSONPath=`.spec.path`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.status.role`,priority=1
// +kubebuilder:printcolumn:name="Key",type=string,JSONPath=`.status.activeKeyFingerprint`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.status.projectedReplicas`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DKMContainer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   DKMContainerSpec   `json:"spec"`
	Status DKMContainerStatus `json:"status,omitempty"`
}

// DKMContainerList is a list of DKMContainers.
// +kubebuilder:object:root=true
type DKMContainerList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DKMContainer `json:"items"`
}

func init() {
	SchemeBuilder.Register(&DKMContainer{}, &DKMContainerList{})
}
