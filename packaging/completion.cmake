# cmake -DBIN=ublk-rdma -DOUT=FILE -P completion.cmake: FILE = `BIN completion bash`, when BIN's
# --help lists a `completion` subcommand (see package.cmake).
execute_process(COMMAND ${BIN} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT help MATCHES "\n +completion")
  message(NOTICE "${BIN} has no `completion` subcommand yet: no bash completion is generated")
  file(REMOVE ${OUT})
  return()
endif()
get_filename_component(dir ${OUT} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
execute_process(COMMAND ${BIN} completion bash OUTPUT_FILE ${OUT}.tmp COMMAND_ERROR_IS_FATAL ANY)
file(RENAME ${OUT}.tmp ${OUT})
