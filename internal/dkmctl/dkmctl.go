// Package dkmctl is the dkmctl command (cmd/dkmctl; also installed as the kubectl plugin
// kubectl-dkm): back up, restore, verify and plan a DKM container in AD, for the people who look
// after it. It reads the DKMContainer from a file or the cluster and talks to AD with
// internal/directory, as the operator does. It never prints key bytes.
package dkmctl

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	dkmv1 "github.com/dkm-operator/dkm-operator/api/v1alpha1"
	"github.com/dkm-operator/dkm-operator/controllers"
	"github.com/dkm-operator/dkm-operator/internal/directory"
	"github.com/dkm-operator/dkm-operator/internal/keys"
)

// Exit codes.
const (
	ExitOK = 0
	// ExitFailed: the command could not do its work (bad input, AD or the cluster refused).
	ExitFailed = 1
	// ExitUsage: the command line is wrong.
	ExitUsage = 2
	// ExitFindings: verify found readers outside the allowed set.
	ExitFindings = 3
)

// Env is what a run talks to. Zero fields take the process defaults (os.Stdout, a client
// from the kubeconfig, time.Now).
type Env struct {
	Stdout, Stderr io.Writer
	// Kube, when set, is used instead of a client built from --kubeconfig (tests).
	Kube client.Client
	Now  func() time.Time
}

// Run runs one dkmctl command line (without the program name) and returns its exit code.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Stdout == nil {
		env.Stdout = os.Stdout
	}
	if env.Stderr == nil {
		env.Stderr = os.Stderr
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if len(args) == 0 {
		usage(env.Stderr)
		return ExitUsage
	}
	cmds := map[string]func(context.Context, []string, Env) error{
		"backup":  runBackup,
		"restore": runRestore,
		"verify":  runVerify,
		"plan":    runPlan,
	}
	run, ok := cmds[args[0]]
	if !ok {
		if args[0] != "help" && args[0] != "-h" && args[0] != "--help" {
			fmt.Fprintf(env.Stderr, "dkmctl: unknown command %q\n", args[0])
		}
		usage(env.Stderr)
		return ExitUsage
	}
	err := run(ctx, args[1:], env)
	var ue usageError
	var fe findingsError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitUsage
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "dkmctl %s: %v\n", args[0], err)
		return ExitUsage
	case errors.As(err, &fe):
		fmt.Fprintf(env.Stderr, "dkmctl %s: %v\n", args[0], err)
		return ExitFindings
	default:
		fmt.Fprintf(env.Stderr, "dkmctl %s: %v\n", args[0], err)
		return ExitFailed
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: dkmctl <command> [flags] [NAME | -f dkmcontainer.yaml]

Commands:
  plan      print the AD changes the operator would make now (from a live read; writes nothing)
            and the hash spec.changeApproval Manual asks to approve
  backup    write the container subtree and its keys into one age-encrypted file
  restore   write a backup into the DKMContainer's path (same DN, another DN, another domain)
  verify    list who can read the keys (explicit and inherited ACEs, nested groups); exit 3 when
            anyone outside the allowed key readers can

The DKMContainer is read from the cluster (NAME, -n NAMESPACE) or a file (-f); the bind
identity, CA bundle and KEK from the Secrets it references, unless flags give them.
Run "dkmctl <command> -h" for a command's flags. As a kubectl plugin: kubectl dkm <command>.
`)
}

type usageError struct{ error }

type findingsError struct{ error }

// common holds the flags every command has: where the DKMContainer comes from and how to reach
// AD and the cluster.
type common struct {
	file, namespace, kubeconfig, clusterID string
	urls                                   stringList
	username, passwordFile, caFile         string
	kekFile                                string
	opTimeout                              time.Duration
	// boundAs is the bind identity the directory connection used (the operator's, allowed to
	// read the keys it manages).
	boundAs string

	env  Env
	kube client.Client
}

// newCommand is a subcommand's flag set with the common flags registered.
func newCommand(name string, env Env) (*flag.FlagSet, *common) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	c := &common{env: env}
	c.register(fs)
	return fs, c
}

// target is a DKMContainer's key protection and a connection to its AD.
type target struct {
	protector keys.Protector
	dir       *directory.Client
	close     func()
}

// connect reads obj's key protection and connects to its AD.
func (c *common) connect(ctx context.Context, obj *dkmv1.DKMContainer) (*target, error) {
	p, err := c.protector(ctx, obj)
	if err != nil {
		return nil, err
	}
	dir, done, err := c.directory(ctx, obj)
	if err != nil {
		return nil, err
	}
	return &target{protector: p, dir: dir, close: done}, nil
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.file, "f", "", "read the DKMContainer from this YAML file instead of the cluster")
	fs.StringVar(&c.namespace, "n", "", "namespace of the DKMContainer (default: the kubeconfig's)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
	fs.StringVar(&c.clusterID, "cluster-id", "", "the cluster's identity in ownership records (default: the kube-system namespace's UID)")
	fs.Var(&c.urls, "url", "LDAP URL of a domain controller (repeatable; default: spec.directory.urls)")
	fs.StringVar(&c.username, "username", "", "bind identity (default: the bind Secret's)")
	fs.StringVar(&c.passwordFile, "password-file", "", "file holding the bind password (default: the bind Secret's)")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM CA bundle for LDAPS (default: the CA bundle Secret's)")
	fs.StringVar(&c.kekFile, "kek-file", "", "file holding the 32-byte KEK (default: the KEK Secret's)")
	fs.DurationVar(&c.opTimeout, "timeout", 30*time.Second, "bound for each LDAP operation")
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// client returns the Kubernetes client, built on first use.
func (c *common) client() (client.Client, error) {
	if c.kube != nil {
		return c.kube, nil
	}
	if c.env.Kube != nil {
		c.kube = c.env.Kube
		return c.kube, nil
	}
	cfg, ns, err := c.restConfig()
	if err != nil {
		return nil, err
	}
	if c.namespace == "" {
		c.namespace = ns
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := dkmv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c.kube, err = client.New(cfg, client.Options{Scheme: scheme})
	return c.kube, err
}

func (c *common) restConfig() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("reading the kubeconfig: %w", err)
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the kubeconfig's namespace: %w", err)
	}
	return cfg, ns, nil
}

// dkmContainer reads the DKMContainer named by the arguments or -f.
func (c *common) dkmContainer(ctx context.Context, args []string) (*dkmv1.DKMContainer, error) {
	obj := &dkmv1.DKMContainer{}
	switch {
	case c.file != "" && len(args) == 0:
		b, err := os.ReadFile(c.file)
		if err != nil {
			return nil, err
		}
		if err := yaml.UnmarshalStrict(b, obj); err != nil {
			return nil, fmt.Errorf("%s: %w", c.file, err)
		}
		if obj.Namespace == "" {
			obj.Namespace = c.namespace
		}
		return obj, nil
	case c.file == "" && len(args) == 1:
		kube, err := c.client()
		if err != nil {
			return nil, err
		}
		if c.namespace == "" {
			c.namespace = "default"
		}
		if err := kube.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: args[0]}, obj); err != nil {
			return nil, fmt.Errorf("reading DKMContainer %s/%s: %w", c.namespace, args[0], err)
		}
		return obj, nil
	default:
		return nil, usageError{errors.New("name one DKMContainer, or give -f FILE")}
	}
}

// directory connects to AD as the flags or the DKMContainer's bind Secret say.
func (c *common) directory(ctx context.Context, obj *dkmv1.DKMContainer) (*directory.Client, func(), error) {
	var cfg directory.Config
	if c.username == "" || c.passwordFile == "" {
		kube, err := c.client()
		if err != nil {
			return nil, nil, fmt.Errorf("the bind Secret is in the cluster (or give --username and --password-file): %w", err)
		}
		if cfg, err = controllers.DirectoryConfig(ctx, kube, obj); err != nil {
			return nil, nil, err
		}
	} else {
		cfg = directory.Config{URLs: obj.Spec.Directory.URLs, AllowPlainLDAP: obj.Spec.Directory.InsecureAllowPlainLDAP}
	}
	if len(c.urls) > 0 {
		cfg.URLs = c.urls
	}
	if c.username != "" {
		cfg.Username = c.username
	}
	if c.passwordFile != "" {
		pw, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return nil, nil, err
		}
		cfg.Password = strings.TrimRight(string(pw), "\r\n")
	}
	if c.caFile != "" {
		ca, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, nil, err
		}
		cfg.CAPEM = ca
	}
	cfg.OpTimeout = c.opTimeout
	c.boundAs = cfg.Username
	pool := directory.NewPool()
	dir, err := pool.Client(cfg)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return dir, pool.Close, nil
}

// protector is the DKMContainer's key protection: Plain, or Wrapped under --kek-file or its
// KEK Secret.
func (c *common) protector(ctx context.Context, obj *dkmv1.DKMContainer) (keys.Protector, error) {
	if obj.Spec.KeyProtection.Mode == dkmv1.KeyPlain {
		return keys.NewProtector(keys.ModePlain, nil)
	}
	if c.kekFile != "" {
		kek, err := os.ReadFile(c.kekFile)
		if err != nil {
			return nil, err
		}
		defer clear(kek)
		ring, err := keys.ParseKEKSecret(map[string][]byte{keys.ActiveKEKDataKey: kek})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.kekFile, err)
		}
		return keys.NewProtector(keys.ModeWrapped, ring)
	}
	kube, err := c.client()
	if err != nil {
		return nil, fmt.Errorf("the KEK Secret is in the cluster (or give --kek-file): %w", err)
	}
	return controllers.Protector(ctx, kube, obj)
}

// owner is the ownership record of the DKMContainer, as the operator writes it.
func (c *common) owner(ctx context.Context, obj *dkmv1.DKMContainer) (directory.Owner, error) {
	if obj.UID == "" {
		return directory.Owner{}, fmt.Errorf("DKMContainer %s/%s has no UID: apply it to the cluster first "+
			"(what a restore writes is recorded as that DKMContainer's)", obj.Namespace, obj.Name)
	}
	id := c.clusterID
	if id == "" {
		kube, err := c.client()
		if err != nil {
			return directory.Owner{}, fmt.Errorf("the cluster ID is read from the cluster (or give --cluster-id): %w", err)
		}
		if id, err = controllers.ClusterID(ctx, kube); err != nil {
			return directory.Owner{}, err
		}
	}
	return directory.Owner{Cluster: id, Namespace: obj.Namespace, Name: obj.Name, UID: string(obj.UID)}, nil
}

func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	// Flags may follow the name (kubectl style): parse, take one positional, parse the rest.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err} // the flag package has printed the flags
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
