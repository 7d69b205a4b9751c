# Script mode: every header under include/lowbit is reached from lowbit/lowbit.hpp. The compiler
# lists the headers one translation unit of `#include <lowbit/lowbit.hpp>` reads (-M); any header
# of the tree missing from that list is named.
execute_process(COMMAND ${CXX_COMPILER} -std=c++20 -fopenmp -M -I${INCLUDE_DIR} -I${EIGEN_INCLUDE_DIR}
                        -x c++ ${INCLUDE_DIR}/lowbit/lowbit.hpp
                RESULT_VARIABLE rc OUTPUT_VARIABLE deps ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "listing the headers of lowbit/lowbit.hpp failed (${rc}):\n${err}")
endif()
string(REPLACE "\\\n" " " deps "${deps}")
file(GLOB_RECURSE headers RELATIVE ${INCLUDE_DIR} ${INCLUDE_DIR}/lowbit/*.hpp)
set(missing)
foreach(header IN LISTS headers)
  if(header STREQUAL "lowbit/lowbit.hpp")
    continue()
  endif()
  string(FIND "${deps}" "${INCLUDE_DIR}/${header}" at)
  if(at EQUAL -1)
    list(APPEND missing ${header})
  endif()
endforeach()
list(LENGTH headers count)
if(missing)
  string(REPLACE ";" "\n  " missing "${missing}")
  message(FATAL_ERROR "lowbit/lowbit.hpp does not reach these headers (include them there):\n  ${missing}")
endif()
message(STATUS "lowbit/lowbit.hpp reaches all ${count} headers")
