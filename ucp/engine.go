package ucp

import (
	"context"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
)

// Engine is the part of the Docker Engine API dtr uses: nothing else of the
// Docker client reaches the rest of the code. Later changes add methods here,
// and to the fake, as they need them.
type Engine interface {
	Ping(ctx context.Context) (types.Ping, error)
	ServerVersion(ctx context.Context) (types.Version, error)
	Info(ctx context.Context) (system.Info, error)
	NodeList(ctx context.Context, options swarm.NodeListOptions) ([]swarm.Node, error)
	ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error)
	Close() error
}

// The real client must keep satisfying Engine.
var _ Engine = (*client.Client)(nil)
