# Script mode: every header under include/lowbit is reached from lowbit/lowbit.hpp. The compiler
# lists the headers one translation unit of `#include <lowbit/lowbit.hpp>` reads (-M); any header
# of the tree missing from that list is named. Then the same for a user of lowbit::compiled
# (-DLOWBIT_COMPILED_LIB), who must reach none of the kernels compiled into that library: no
# *_core.hpp and none of the vectorized or exact paths (they are most of the compile time).
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

execute_process(COMMAND ${CXX_COMPILER} -std=c++20 -fopenmp -M -DLOWBIT_COMPILED_LIB -I${INCLUDE_DIR}
                        -I${EIGEN_INCLUDE_DIR} -x c++ ${INCLUDE_DIR}/lowbit/lowbit.hpp
                RESULT_VARIABLE rc OUTPUT_VARIABLE deps ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "listing the headers of lowbit/lowbit.hpp with LOWBIT_COMPILED_LIB failed (${rc}):\n${err}")
endif()
string(REPLACE "\\\n" " " deps "${deps}")
set(compiled_in)
foreach(header IN LISTS headers)
  if(header MATCHES "_core\\.hpp$" OR header MATCHES
     "datapath/(fast_datapath|integer_chain|scaled_chain|shift_rounding|exact_datapath|rounding_steps)\\.hpp$")
    string(FIND "${deps}" "${INCLUDE_DIR}/${header}" at)
    if(NOT at EQUAL -1)
      list(APPEND compiled_in ${header})
    endif()
  endif()
endforeach()
if(compiled_in)
  string(REPLACE ";" "\n  " compiled_in "${compiled_in}")
  message(FATAL_ERROR "with LOWBIT_COMPILED_LIB, lowbit/lowbit.hpp still reaches these headers of kernels that "
                      "lowbit::compiled has compiled (include them only from their *_core.hpp):\n  ${compiled_in}")
endif()
message(STATUS "with LOWBIT_COMPILED_LIB, lowbit/lowbit.hpp reaches none of the compiled kernels")
