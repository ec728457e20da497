// Command vk is labkit's Liqo-compatible virtual kubelet.
//
// One instance runs per peering, as a Deployment in the consumer ("home") cluster's tenant
// namespace liqo-tenant-<provider>. It registers the virtual Node liqo-<provider>, renews
// its Lease while the provider's API server answers, sets Ready=False while the peering's
// TunnelEndpoint is not Connected, and reflects pods (as ShadowPod-like ReplicaSets of one),
// Services, EndpointSlices, ConfigMaps and Secrets into the provider's mapped namespaces.
// It is built on github.com/virtual-kubelet/virtual-kubelet v1.11.0, the library under
// Liqo v0.10.2. Every timer is a flag whose default is Liqo v0.10.2's.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/log"
	logruslogger "github.com/virtual-kubelet/virtual-kubelet/log/logrus"
	"github.com/virtual-kubelet/virtual-kubelet/node"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
)

// options holds every command-line flag; defaults are Liqo v0.10.2's.
type options struct {
	clusterID          string
	homeClusterID      string
	nodeName           string
	tenantNamespace    string
	foreignKubeconfig  string
	homeKubeconfig     string
	nodeLabels         string
	nodeIP             string
	pingInterval       time.Duration
	pingTimeout        time.Duration
	checkNetwork       bool
	leaseDuration      time.Duration
	statusInterval     time.Duration
	capacityInterval   time.Duration
	reflectionResync   time.Duration
	taint              bool
	logLevel           string
	remoteRemapFlag    string
	localRemapFlag     string
	remoteRemap        *cidrRemap
	localRemap         *cidrRemap
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("vk", flag.ContinueOnError)
	fs.StringVar(&o.clusterID, "foreign-cluster-id", "", "cluster ID of the provider (required)")
	fs.StringVar(&o.homeClusterID, "home-cluster-id", "", "cluster ID of the consumer running this virtual kubelet (required)")
	fs.StringVar(&o.nodeName, "nodename", "", "name of the virtual node (default liqo-<foreign-cluster-id>)")
	fs.StringVar(&o.tenantNamespace, "tenant-namespace", "", "tenant namespace holding the TunnelEndpoint (default liqo-tenant-<foreign-cluster-id>)")
	fs.StringVar(&o.foreignKubeconfig, "foreign-kubeconfig", "", "kubeconfig of the provider identity (required)")
	fs.StringVar(&o.homeKubeconfig, "home-kubeconfig", "", "kubeconfig of the consumer (default: in-cluster)")
	fs.StringVar(&o.nodeLabels, "node-extra-labels", "", "extra node labels, k=v,k2=v2 (the provider's cluster labels)")
	fs.StringVar(&o.nodeIP, "node-ip", os.Getenv("POD_IP"), "InternalIP of the virtual node (default $POD_IP)")
	fs.DurationVar(&o.pingInterval, "node-ping-interval", 10*time.Second, "interval of the provider API server check")
	fs.DurationVar(&o.pingTimeout, "node-ping-timeout", time.Second, "timeout of one provider API server check")
	fs.BoolVar(&o.checkNetwork, "node-check-network", true, "set Ready=False while the TunnelEndpoint is not Connected")
	fs.DurationVar(&o.leaseDuration, "node-lease-duration", 40*time.Second, "node Lease duration (renewed every quarter)")
	fs.DurationVar(&o.statusInterval, "node-status-update-interval", time.Minute, "interval of full node status updates")
	fs.DurationVar(&o.capacityInterval, "capacity-update-interval", 30*time.Second, "interval of provider capacity reads")
	fs.DurationVar(&o.reflectionResync, "resync-period", 30*time.Second, "resync period of the reflectors")
	fs.BoolVar(&o.taint, "node-taint", true, "taint the node virtual-node.liqo.io/not-allowed=true:NoExecute as Liqo does")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level (debug, info, warn, error)")
	fs.StringVar(&o.remoteRemapFlag, "remote-pod-cidr-remap", "", "PROVIDER_POD_CIDR=CIDR the consumer reaches it at (colliding pod CIDRs)")
	fs.StringVar(&o.localRemapFlag, "local-pod-cidr-remap", "", "CONSUMER_POD_CIDR=CIDR the provider reaches it at (colliding pod CIDRs)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.clusterID == "" || o.homeClusterID == "" || o.foreignKubeconfig == "" {
		return nil, fmt.Errorf("--foreign-cluster-id, --home-cluster-id and --foreign-kubeconfig are required")
	}
	var err error
	if o.remoteRemap, err = parseRemap(o.remoteRemapFlag); err != nil {
		return nil, err
	}
	if o.localRemap, err = parseRemap(o.localRemapFlag); err != nil {
		return nil, err
	}
	if o.nodeName == "" {
		o.nodeName = "liqo-" + o.clusterID
	}
	if o.tenantNamespace == "" {
		o.tenantNamespace = "liqo-tenant-" + o.clusterID
	}
	return o, nil
}

func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("bad label %q in --node-extra-labels (want k=v)", kv)
		}
		out[k] = v
	}
	return out, nil
}

func homeConfig(path string) (*rest.Config, error) {
	if path == "" {
		return rest.InClusterConfig()
	}
	return clientcmd.BuildConfigFromFlags("", path)
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "vk:", err)
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	logger := logrus.StandardLogger()
	logger.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000"})
	if lvl, err := logrus.ParseLevel(o.logLevel); err == nil {
		logger.SetLevel(lvl)
	}
	log.L = logruslogger.FromLogrus(logrus.NewEntry(logger))
	if err := run(ctx, o); err != nil {
		log.G(ctx).WithError(err).Error("virtual kubelet failed")
		os.Exit(1)
	}
}

func run(ctx context.Context, o *options) error {
	extra, err := parseLabels(o.nodeLabels)
	if err != nil {
		return err
	}
	hcfg, err := homeConfig(o.homeKubeconfig)
	if err != nil {
		return fmt.Errorf("home cluster config: %w", err)
	}
	fcfg, err := clientcmd.BuildConfigFromFlags("", o.foreignKubeconfig)
	if err != nil {
		return fmt.Errorf("foreign cluster config %s: %w", o.foreignKubeconfig, err)
	}
	for _, c := range []*rest.Config{hcfg, fcfg} {
		c.QPS, c.Burst = 50, 100
	}
	home := kubernetes.NewForConfigOrDie(hcfg)
	homeDyn := dynamic.NewForConfigOrDie(hcfg)
	foreign := kubernetes.NewForConfigOrDie(fcfg)

	offl := newOffloadingTracker(homeDyn, o.clusterID, o.homeClusterID, o.reflectionResync)
	go offl.run(ctx)

	np := newNodeProvider(o, foreign, homeDyn, home.CoreV1().Nodes())
	vnode := np.initialNode(ctx, extra)
	nc, err := node.NewNodeController(np, vnode, home.CoreV1().Nodes(),
		node.WithNodeEnableLeaseV1(home.CoordinationV1().Leases(corev1.NamespaceNodeLease), int32(o.leaseDuration.Seconds())),
		node.WithNodePingInterval(o.pingInterval),
		node.WithNodePingTimeout(o.pingTimeout),
		node.WithNodeStatusUpdateInterval(o.statusInterval))
	if err != nil {
		return err
	}
	go np.run(ctx)

	pods := informers.NewSharedInformerFactoryWithOptions(home, o.reflectionResync,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", o.nodeName).String()
		}))
	others := informers.NewSharedInformerFactory(home, o.reflectionResync)
	bcast := record.NewBroadcaster()
	bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: home.CoreV1().Events("")})
	recorder := bcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "virtual-kubelet", Host: o.nodeName})

	prov := newPodProvider(foreign, offl, o)
	pc, err := node.NewPodController(node.PodControllerConfig{
		PodClient:         home.CoreV1(),
		PodInformer:       pods.Core().V1().Pods(),
		EventRecorder:     recorder,
		Provider:          prov,
		ConfigMapInformer: others.Core().V1().ConfigMaps(),
		SecretInformer:    others.Core().V1().Secrets(),
		ServiceInformer:   others.Core().V1().Services(),
	})
	if err != nil {
		return err
	}
	refl := newReflectors(others, foreign, offl, o)
	pods.Start(ctx.Done())
	others.Start(ctx.Done())
	go refl.run(ctx)

	go func() {
		if err := pc.Run(ctx, 4); err != nil && ctx.Err() == nil {
			log.G(ctx).WithError(err).Error("pod controller stopped")
			os.Exit(1)
		}
	}()
	log.G(ctx).Infof("virtual kubelet for %s: node %s, tenant namespace %s", o.clusterID, o.nodeName, o.tenantNamespace)
	return nc.Run(ctx)
}
