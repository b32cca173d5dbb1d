# meshid_proto_library(<target> ROOT <dir> PROTOS <relative .proto paths>)
# Runs protoc + grpc_cpp_plugin and builds one static library of the result.
function(meshid_proto_library target)
  cmake_parse_arguments(A "" "ROOT" "PROTOS" ${ARGN})
  set(gen ${CMAKE_CURRENT_BINARY_DIR}/gen/${target})
  file(MAKE_DIRECTORY ${gen})
  set(srcs)
  foreach(p IN LISTS A_PROTOS)
    string(REGEX REPLACE "\\.proto$" "" base ${p})
    add_custom_command(
      OUTPUT ${gen}/${base}.pb.cc ${gen}/${base}.pb.h ${gen}/${base}.grpc.pb.cc ${gen}/${base}.grpc.pb.h
      COMMAND protobuf::protoc --proto_path=${A_ROOT} --cpp_out=${gen} --grpc_out=${gen}
              --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin> ${A_ROOT}/${p}
      DEPENDS ${A_ROOT}/${p} protobuf::protoc gRPC::grpc_cpp_plugin
      COMMENT "protoc ${p}" VERBATIM)
    list(APPEND srcs ${gen}/${base}.pb.cc ${gen}/${base}.grpc.pb.cc)
  endforeach()
  add_library(${target} STATIC ${srcs})
  # Generated code is not ours to warn about.
  target_compile_options(${target} PRIVATE -w)
  target_include_directories(${target} SYSTEM PUBLIC ${gen})
  target_link_libraries(${target} PUBLIC gRPC::grpc++ protobuf::libprotobuf)
endfunction()
