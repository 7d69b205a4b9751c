# Script mode: a user of lowbit::compiled does not compile the nn layers' code. One small network
# program is compiled (-c) twice: as lowbit::compiled compiles the layers (LOWBIT_COMPILING_LIB,
# src/compiled.cpp), its object defines conv2d's constructor (the control: nm finds the symbol
# defined where the code is there); with -DLOWBIT_COMPILED_LIB alone, it must only refer to it
# (nm: undefined), the definition being lowbit::compiled's (nn/definitions.hpp). (Header-only the
# object would define it too, but compiling the kernels at -O0 for that took 80 s of CI.)
file(MAKE_DIRECTORY ${WORK_DIR})
file(WRITE ${WORK_DIR}/network.cpp [=[
#include <lowbit/nn.hpp>
int main() {
    lowbit::nn::network net({1, 8, 8});
    net.add("conv", lowbit::nn::conv2d({.channels = 1, .height = 8, .width = 8, .kernel = 3, .padding = 1}, 2));
    lowbit::nn::tensor x{lowbit::nn::matrix::Zero(1, 64), {1, 8, 8}};
    return net.forward(x, lowbit::nn::pass::inference).values.size() == 128 ? 0 : 1;
}
]=])
function(conv2d_constructor_symbol flags result)
  execute_process(COMMAND ${CXX_COMPILER} -std=c++20 -O0 -fopenmp ${flags} -I${INCLUDE_DIR} -I${EIGEN_INCLUDE_DIR}
                          -c ${WORK_DIR}/network.cpp -o ${WORK_DIR}/network.o
                  RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "compiling a network program (${flags}) failed (${rc}):\n${err}")
  endif()
  execute_process(COMMAND ${NM} -C ${WORK_DIR}/network.o RESULT_VARIABLE rc OUTPUT_VARIABLE symbols)
  string(REGEX MATCH "[^\n]*lowbit::nn::conv2d::conv2d\\(lowbit::conv_geometry[^\n]*" line "${symbols}")
  if(NOT line)
    message(FATAL_ERROR "nm lists no constructor lowbit::nn::conv2d::conv2d(conv_geometry, ...) in the network program's object (${flags})")
  endif()
  string(REGEX MATCH "^ *[0-9a-f]* ([A-Za-z]) " kind "${line}")
  set(${result} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()
conv2d_constructor_symbol("-DLOWBIT_COMPILED_LIB;-DLOWBIT_COMPILING_LIB" library)
if(library STREQUAL "U")
  message(FATAL_ERROR "compiled as the library compiles the layers (LOWBIT_COMPILING_LIB), the network program's "
                      "object should define conv2d's constructor, and nm says U")
endif()
conv2d_constructor_symbol("-DLOWBIT_COMPILED_LIB" compiled)
if(NOT compiled STREQUAL "U")
  message(FATAL_ERROR "with LOWBIT_COMPILED_LIB the network program's object defines conv2d's constructor (nm: "
                      "${compiled}): the layers' code is compiled into every user's file again")
endif()
message(STATUS "conv2d's constructor: as the library compiles it ${library}, with LOWBIT_COMPILED_LIB ${compiled}")
