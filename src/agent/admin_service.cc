// meshid.v1.AgentAdmin, served only on the agent's 0600 admin socket.
#include <grpcpp/grpcpp.h>

#include "agent/services.h"
#include "meshid/v1/agent.grpc.pb.h"

namespace meshid::agent {
namespace {

class AdminService final : public meshid::v1::AgentAdmin::CallbackService {
 public:
  explicit AdminService(std::function<std::string()> status) : status_(std::move(status)) {}

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* call,
                                   const meshid::v1::AgentStatusRequest*,
                                   meshid::v1::AgentStatusResponse* response) override {
    response->set_json(status_());
    auto* reactor = call->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  std::function<std::string()> status_;
};

}  // namespace

std::unique_ptr<grpc::Service> makeAdminService(std::function<std::string()> status) {
  return std::make_unique<AdminService>(std::move(status));
}

}  // namespace meshid::agent
