# Every test runs under ctest: C unit tests, busted specs (unit and
# integration, against the real binary) and the differential test
# against the official Node SDK.

add_executable(test_core spec/c/test_core.c)
target_link_libraries(test_core PRIVATE abcore)
add_test(NAME c_core COMMAND test_core)

add_executable(test_http_client spec/c/test_http_client.c)
target_link_libraries(test_http_client PRIVATE abcore)
add_test(NAME c_http_client COMMAND test_http_client)

add_executable(test_sqlite spec/c/test_sqlite.c)
target_link_libraries(test_sqlite PRIVATE abcore)
add_test(NAME c_sqlite COMMAND test_sqlite)

add_executable(test_pg spec/c/test_pg.c)
target_link_libraries(test_pg PRIVATE abcore)
add_test(NAME c_pg COMMAND test_pg)

add_executable(test_metrics spec/c/test_metrics.c)
target_link_libraries(test_metrics PRIVATE abcore)
add_test(NAME c_metrics COMMAND test_metrics)

add_executable(test_watcher spec/c/test_watcher.c)
target_link_libraries(test_watcher PRIVATE abcore)
add_test(NAME c_watcher COMMAND test_watcher)

add_executable(test_json spec/c/test_json.c)
target_link_libraries(test_json PRIVATE abcore)
add_test(NAME c_json COMMAND test_json)

find_program(BUSTED busted REQUIRED)
set(AB_SPEC_ENV
  "AUTHKIT_BROKER_BIN=$<TARGET_FILE:authkit-broker>"
  "AUTHKIT_BROKER_ROOT=${CMAKE_SOURCE_DIR}"
  "AUTHKIT_BROKER_SANITIZED=${AB_SANITIZE}")

add_test(NAME lua_unit
  COMMAND ${BUSTED} --run=unit -o utfTerminal
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})

add_test(NAME lua_integration
  COMMAND ${BUSTED} --run=integration -o utfTerminal
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(lua_integration PROPERTIES
  ENVIRONMENT "${AB_SPEC_ENV}" TIMEOUT 900)

find_program(NODE node REQUIRED)
add_test(NAME browser_demo
  COMMAND ${NODE} --test spec/browser/demo.test.mjs
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
set_tests_properties(browser_demo PROPERTIES
  ENVIRONMENT "${AB_SPEC_ENV}" TIMEOUT 300)

add_test(NAME style COMMAND bash scripts/check-style.sh
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
