// Command grpcpeer is a real gRPC server and client (google.golang.org/grpc
// over h2c, no generated code: the service is described by hand and its
// messages are google.protobuf.Struct) used to capture the gRPC
// conversations in ../conv. It is a module of its own so that the
// project's go.mod does not need grpc.
//
//	grpcpeer -serve 127.0.0.1:8082
//	grpcpeer -call 127.0.0.1:9000
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // registers the gzip compressor
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

var desc = grpc.ServiceDesc{
	ServiceName: "orders.v1.Orders",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Create", Handler: create},
		{MethodName: "Fail", Handler: fail},
	},
}

func create(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	in.Fields["status"] = structpb.NewStringValue("created; card 4111 1111 1111 1111")
	return in, nil
}

func fail(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	return nil, status.Error(codes.InvalidArgument, "bad note: 100% 'or 1=1'")
}

func main() {
	serve := flag.String("serve", "", "address to serve on")
	call := flag.String("call", "", "server to call")
	note := flag.String("note", "1 UNION SELECT password FROM users", "the request's note (the captures use the default)")
	flag.Parse()
	if *serve != "" {
		ln, err := net.Listen("tcp", *serve)
		if err != nil {
			log.Fatal(err)
		}
		s := grpc.NewServer()
		s.RegisterService(&desc, struct{}{})
		log.Fatal(s.Serve(ln))
	}
	conn, err := grpc.NewClient(*call, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := structpb.NewStruct(map[string]any{
		"name":  "widget",
		"note":  *note,
		"items": map[string]any{"sku": "A-1", "qty": 2},
	})
	if err != nil {
		log.Fatal(err)
	}
	resp := new(structpb.Struct)
	// Plain, gzip-compressed, and one that fails with a status.
	if err := conn.Invoke(ctx, "/orders.v1.Orders/Create", req, resp); err != nil {
		log.Fatal(err)
	}
	if err := conn.Invoke(ctx, "/orders.v1.Orders/Create", req, resp, grpc.UseCompressor("gzip")); err != nil {
		log.Fatal(err)
	}
	if err := conn.Invoke(ctx, "/orders.v1.Orders/Fail", req, resp); status.Code(err) != codes.InvalidArgument {
		log.Fatalf("Fail: %v", err)
	}
}
